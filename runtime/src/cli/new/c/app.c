// {{name}}: a Weir transform.
//
// For every record: emit its value in upper case, keyed as the input, followed by how
// many records with that key this partition has seen (kept in state under
// `seen/<key>` as a JSON number). A record without a value is refused: the pipeline's
// error policy decides what happens to it.
//
// transform.h is generated from wit/ by `wit-bindgen c` when build.sh runs. Ownership
// follows the canonical ABI: the exports own their arguments and free them; what they
// return is malloc'd and freed by the bindings after the host has copied it.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"

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
static unsigned long long bump_seen(const transform_option_list_u8_t *record_key) {
    static const char prefix[] = "seen/";
    size_t key_len = record_key->is_some ? record_key->val.len : 0;
    transform_list_u8_t key = {checked_malloc(sizeof prefix - 1 + key_len), sizeof prefix - 1 + key_len};
    memcpy(key.ptr, prefix, sizeof prefix - 1);
    if (key_len) memcpy(key.ptr + sizeof prefix - 1, record_key->val.ptr, key_len);

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

bool exports_transform_process(transform_list_input_record_t *records, transform_list_output_record_t *ret,
                               transform_record_error_t *err) {
    transform_output_record_t *outputs = calloc(records->len ? records->len : 1, sizeof *outputs);
    if (!outputs) abort();
    size_t count = 0;
    bool ok = true;
    for (size_t i = 0; i < records->len; i++) {
        transform_input_record_t *record = &records->ptr[i];
        if (!record->value.is_some || record->value.val.len == 0) {
            err->index = (uint32_t)i;
            transform_string_dup(&err->message, "the record has no value");
            ok = false;
            break;
        }
        unsigned long long seen = bump_seen(&record->key);

        // "<VALUE IN UPPER CASE> #<seen>"
        const transform_list_u8_t *value = &record->value.val;
        char suffix[32];
        int suffix_len = snprintf(suffix, sizeof suffix, " #%llu", seen);
        size_t len = value->len + (size_t)suffix_len;
        uint8_t *text = checked_malloc(len);
        for (size_t k = 0; k < value->len; k++) {
            uint8_t c = value->ptr[k];
            text[k] = (c >= 'a' && c <= 'z') ? (uint8_t)(c - 'a' + 'A') : c;
        }
        memcpy(text + value->len, suffix, (size_t)suffix_len);

        transform_output_record_t *out = &outputs[count++];
        if (record->key.is_some) {
            out->key.is_some = true;
            out->key.val = (transform_list_u8_t){checked_malloc(record->key.val.len), record->key.val.len};
            memcpy(out->key.val.ptr, record->key.val.ptr, record->key.val.len);
        }
        out->value.is_some = true;
        out->value.val = (transform_list_u8_t){text, len};
        out->timestamp.is_some = true;
        out->timestamp.val = record->timestamp;
    }
    transform_list_input_record_free(records);
    if (!ok) {
        for (size_t k = 0; k < count; k++) transform_output_record_free(&outputs[k]);
        free(outputs);
        return false;
    }
    ret->ptr = outputs;
    ret->len = count;
    return true;
}
