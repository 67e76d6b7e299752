// Helpers for Weir transforms written in C, over the bindings `wit-bindgen c`
// generates from wit/ (transform.h).
//
// The contract moves a batch as columns: a list per field and every key, value and
// header byte in one `data` buffer, record after record (wit/README.md, "Batches").
// `weir_records_next` walks an input batch record by record; `weir_outputs_add` lays
// outputs out in an output batch. Header-only: include it in the one .c file that
// implements `exports_transform_process`.

#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"

// A borrowed run of bytes; `ptr` is NULL when the field is absent.
typedef struct {
    const uint8_t *ptr;
    size_t len;
} weir_bytes_t;

// One record of an input batch; its bytes point into the batch.
typedef struct {
    size_t index;
    weir_bytes_t key, value;
    int64_t timestamp, offset;
    // This record's headers: names and values alternate, two entries per header.
    size_t header_count;
    const uint32_t *header_lens;
    const uint8_t *header_data;
} weir_record_t;

// Where a walk over a batch is.
typedef struct {
    const transform_input_batch_t *batch;
    size_t next, data_at, header_at;
} weir_records_t;

static inline weir_records_t weir_records(const transform_input_batch_t *batch) {
    return (weir_records_t){batch, 0, 0, 0};
}

static inline weir_bytes_t weir_take(weir_records_t *walk, int32_t len) {
    static const uint8_t empty[1];
    if (len < 0) return (weir_bytes_t){NULL, 0};
    const uint8_t *base = walk->batch->data.ptr ? walk->batch->data.ptr : empty;
    weir_bytes_t bytes = {base + walk->data_at, (size_t)len};
    walk->data_at += (size_t)len;
    return bytes;
}

// The next record of the batch into `record`; false after the last one.
static inline bool weir_records_next(weir_records_t *walk, weir_record_t *record) {
    const transform_input_batch_t *b = walk->batch;
    size_t i = walk->next;
    if (i >= b->offsets.len) return false;
    record->index = i;
    record->header_count = b->header_counts.ptr[i];
    record->header_lens = b->header_lens.ptr + walk->header_at;
    record->header_data = b->data.ptr + walk->data_at;
    for (size_t h = 0; h < 2 * record->header_count; h++) walk->data_at += b->header_lens.ptr[walk->header_at + h];
    walk->header_at += 2 * record->header_count;
    record->key = weir_take(walk, b->key_lens.ptr[i]);
    record->value = weir_take(walk, b->value_lens.ptr[i]);
    record->timestamp = b->timestamps.ptr[i];
    record->offset = b->offsets.ptr[i];
    walk->next = i + 1;
    return true;
}

// Header `h` (below `record->header_count`) of `record`: its name (UTF-8) and value.
static inline void weir_record_header(const weir_record_t *record, size_t h, weir_bytes_t *name, weir_bytes_t *value) {
    const uint8_t *at = record->header_data;
    for (size_t k = 0; k < 2 * h; k++) at += record->header_lens[k];
    *name = (weir_bytes_t){at, record->header_lens[2 * h]};
    *value = (weir_bytes_t){at + name->len, record->header_lens[2 * h + 1]};
}

static inline void *weir_grow(void *ptr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return ptr;
    size_t bigger = *cap ? *cap * 2 : 64;
    while (bigger < need) bigger *= 2;
    ptr = realloc(ptr, bigger * size);
    if (!ptr) abort();
    *cap = bigger;
    return ptr;
}

// A growable column of an output batch.
#define WEIR_COLUMN(type) struct { type *ptr; size_t len, cap; }

// The outputs of a batch, built up with `weir_outputs_add` and handed to the bindings
// with `weir_outputs_finish` (or dropped with `weir_outputs_free`).
typedef struct {
    WEIR_COLUMN(int32_t) key_lens, value_lens, topic_lens;
    WEIR_COLUMN(int64_t) timestamps;
    WEIR_COLUMN(uint32_t) header_counts;
    WEIR_COLUMN(uint8_t) data;
} weir_outputs_t;

#define WEIR_PUSH(column, item)                                                                 \
    do {                                                                                        \
        (column).ptr = weir_grow((column).ptr, &(column).cap, (column).len + 1, sizeof *(column).ptr); \
        (column).ptr[(column).len++] = (item);                                                  \
    } while (0)

static inline int32_t weir_outputs_bytes(weir_outputs_t *outs, weir_bytes_t bytes) {
    if (!bytes.ptr) return -1;
    outs->data.ptr = weir_grow(outs->data.ptr, &outs->data.cap, outs->data.len + bytes.len, 1);
    if (bytes.len) memcpy(outs->data.ptr + outs->data.len, bytes.ptr, bytes.len);
    outs->data.len += bytes.len;
    return (int32_t)bytes.len;
}

// Emit `value` under `key` (either may be absent: ptr NULL) to the pipeline's output
// topic, with `timestamp` (milliseconds since the epoch). The bytes are copied.
static inline void weir_outputs_add(weir_outputs_t *outs, weir_bytes_t key, weir_bytes_t value, int64_t timestamp) {
    WEIR_PUSH(outs->header_counts, 0);
    WEIR_PUSH(outs->key_lens, weir_outputs_bytes(outs, key));
    WEIR_PUSH(outs->value_lens, weir_outputs_bytes(outs, value));
    WEIR_PUSH(outs->topic_lens, -1);
    WEIR_PUSH(outs->timestamps, timestamp);
}

// Hand the outputs to the bindings, which free them after the host has copied them.
static inline void weir_outputs_finish(weir_outputs_t *outs, transform_output_batch_t *ret) {
#define WEIR_HAND_OVER(column) (ret->column.ptr = outs->column.ptr, ret->column.len = outs->column.len)
    memset(ret, 0, sizeof *ret);
    WEIR_HAND_OVER(key_lens);
    WEIR_HAND_OVER(value_lens);
    WEIR_HAND_OVER(topic_lens);
    WEIR_HAND_OVER(timestamps);
    WEIR_HAND_OVER(header_counts);
    WEIR_HAND_OVER(data);
#undef WEIR_HAND_OVER
    *outs = (weir_outputs_t){0};
}

static inline void weir_outputs_free(weir_outputs_t *outs) {
    free(outs->key_lens.ptr);
    free(outs->value_lens.ptr);
    free(outs->topic_lens.ptr);
    free(outs->timestamps.ptr);
    free(outs->header_counts.ptr);
    free(outs->data.ptr);
    *outs = (weir_outputs_t){0};
}

#endif
