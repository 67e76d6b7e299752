// Helpers for Weir transforms written in C, over the bindings `wit-bindgen c`
// generates from wit/ (transform.h).
//
// The contract moves a batch as flat lists: every key, value and header byte in one
// `data` buffer, records holding spans into it (wit/README.md, "Batches"). These
// helpers read a record's bytes out of its input batch and lay outputs out in an
// output batch. Header-only: include it in the one .c file that implements
// `exports_transform_process`.

#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"

typedef weir_transform_types_input_record_t weir_input_record_t;
typedef weir_transform_types_span_t weir_span_t;
typedef weir_transform_types_option_span_t weir_option_span_t;

// A borrowed run of bytes; `ptr` is NULL when the field is absent.
typedef struct {
    const uint8_t *ptr;
    size_t len;
} weir_bytes_t;

// The bytes of `span` in `batch`. A present but empty field is a non-NULL pointer
// even when the batch has no data at all.
static inline weir_bytes_t weir_bytes(const transform_input_batch_t *batch, weir_option_span_t span) {
    static const uint8_t empty[1];
    if (!span.is_some) return (weir_bytes_t){NULL, 0};
    const uint8_t *base = batch->data.ptr ? batch->data.ptr : empty;
    return (weir_bytes_t){base + span.val.start, span.val.len};
}

static inline weir_bytes_t weir_key(const transform_input_batch_t *batch, const weir_input_record_t *record) {
    return weir_bytes(batch, record->key);
}

static inline weir_bytes_t weir_value(const transform_input_batch_t *batch, const weir_input_record_t *record) {
    return weir_bytes(batch, record->value);
}

static inline void *weir_grow(void *ptr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return ptr;
    size_t cap2 = *cap ? *cap * 2 : 64;
    while (cap2 < need) cap2 *= 2;
    ptr = realloc(ptr, cap2 * size);
    if (!ptr) abort();
    *cap = cap2;
    return ptr;
}

// The outputs of a batch, built up with `weir_outputs_add` and handed to the bindings
// with `weir_outputs_finish` (or dropped with `weir_outputs_free`).
typedef struct {
    weir_transform_types_output_record_t *records;
    size_t len, cap;
    uint8_t *data;
    size_t data_len, data_cap;
} weir_outputs_t;

static inline weir_option_span_t weir_outputs_push(weir_outputs_t *outs, weir_bytes_t bytes) {
    if (!bytes.ptr) return (weir_option_span_t){.is_some = false};
    outs->data = weir_grow(outs->data, &outs->data_cap, outs->data_len + bytes.len, 1);
    if (bytes.len) memcpy(outs->data + outs->data_len, bytes.ptr, bytes.len);
    weir_option_span_t span = {.is_some = true, .val = {(uint32_t)outs->data_len, (uint32_t)bytes.len}};
    outs->data_len += bytes.len;
    return span;
}

// Emit `value` under `key` (either may be absent: ptr NULL) to the pipeline's output
// topic, with `timestamp` (milliseconds since the epoch). The bytes are copied.
static inline void weir_outputs_add(weir_outputs_t *outs, weir_bytes_t key, weir_bytes_t value, int64_t timestamp) {
    outs->records = weir_grow(outs->records, &outs->cap, outs->len + 1, sizeof *outs->records);
    weir_transform_types_output_record_t *out = &outs->records[outs->len++];
    memset(out, 0, sizeof *out);
    out->key = weir_outputs_push(outs, key);
    out->value = weir_outputs_push(outs, value);
    out->timestamp.is_some = true;
    out->timestamp.val = timestamp;
}

// Hand the outputs to the bindings, which free them after the host has copied them.
static inline void weir_outputs_finish(weir_outputs_t *outs, transform_output_batch_t *ret) {
    memset(ret, 0, sizeof *ret);
    ret->records.ptr = outs->records;
    ret->records.len = outs->len;
    ret->data.ptr = outs->data;
    ret->data.len = outs->data_len;
    *outs = (weir_outputs_t){0};
}

static inline void weir_outputs_free(weir_outputs_t *outs) {
    free(outs->records);
    free(outs->data);
    *outs = (weir_outputs_t){0};
}

#endif
