// {{name}}: a Weir transform.
//
// For every record: emit its value in upper case, keyed as the input, followed by how
// many records with that key this partition has seen (kept in state under
// `seen/<key>` as a JSON number). A record without a value is refused: the pipeline's
// error policy decides what happens to it.
//
// transform.h is generated from wit/ by `wit-bindgen c` when build.sh runs; weir.h
// reads records out of a batch and lays outputs out in one. Ownership follows the
// canonical ABI: the exports own their arguments and free them; what they return is
// malloc'd and freed by the bindings after the host has copied it.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"
#include "weir.h"

bool exports_transform_init(transform_list_tuple2_string_string_t *config, transform_string_t *err) {
    (void)err;
    transform_list_tuple2_string_string_free(config);
    return true;
}

static uint8_t *checked_malloc(size_t len) {
    uint8_t *p = malloc(len ? len : 1);
    if (!p) abort();
    return p;
}

// The record's count so far, plus one, stored back.
static unsigned long long bump_seen(weir_bytes_t record_key) {
    static const char prefix[] = "seen/";
    size_t key_len = record_key.len;
    transform_list_u8_t key = {checked_malloc(sizeof prefix - 1 + key_len), sizeof prefix - 1 + key_len};
    memcpy(key.ptr, prefix, sizeof prefix - 1);
    if (key_len) memcpy(key.ptr + sizeof prefix - 1, record_key.ptr, key_len);

    unsigned long long seen = 0;
    transform_list_u8_t stored;
    if (weir_transform_state_get(&key, &stored)) {
        char digits[32] = {0};
        memcpy(digits, stored.ptr, stored.len < sizeof digits - 1 ? stored.len : sizeof digits - 1);
        seen = strtoull(digits, NULL, 10);
        transform_list_u8_free(&stored);
    }
    seen++;
    char text[32];
    int len = snprintf(text, sizeof text, "%llu", seen);
    transform_list_u8_t value = {(uint8_t *)text, (size_t)len};
    weir_transform_state_put(&key, &value);
    free(key.ptr);
    return seen;
}

bool exports_transform_process(transform_input_batch_t *batch, transform_output_batch_t *ret,
                               transform_record_error_t *err) {
    weir_outputs_t outputs = {0};
    bool ok = true;
    weir_records_t records = weir_records(batch);
    weir_record_t record;
    while (weir_records_next(&records, &record)) {
        if (!record.value.ptr || record.value.len == 0) {
            err->index = (uint32_t)record.index;
            transform_string_dup(&err->message, "the record has no value");
            ok = false;
            break;
        }
        unsigned long long seen = bump_seen(record.key);

        // "<VALUE IN UPPER CASE> #<seen>"
        char suffix[32];
        int suffix_len = snprintf(suffix, sizeof suffix, " #%llu", seen);
        size_t len = record.value.len + (size_t)suffix_len;
        uint8_t *text = checked_malloc(len);
        for (size_t k = 0; k < record.value.len; k++) {
            uint8_t c = record.value.ptr[k];
            text[k] = (c >= 'a' && c <= 'z') ? (uint8_t)(c - 'a' + 'A') : c;
        }
        memcpy(text + record.value.len, suffix, (size_t)suffix_len);
        weir_outputs_add(&outputs, record.key, (weir_bytes_t){text, len}, record.timestamp);
        free(text);
    }
    transform_input_batch_free(batch);
    if (!ok) {
        weir_outputs_free(&outputs);
        return false;
    }
    weir_outputs_finish(&outputs, ret);
    return true;
}
