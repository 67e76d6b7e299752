// Stateful word count: split each record's value into words, keep a count per word in
// state, and emit every word with its running count.
//
// State layout (shared by the word-count examples in every language, so a pipeline can
// swap one for another and keep its counts): key `count/<word>`, value the count as a
// JSON number.
//
// Written against the bindings `wit-bindgen c` generates from wit/ (transform.h) and
// the helpers of weir.h (sdk/c/), which read records out of a batch and lay outputs
// out in one. Ownership follows the canonical ABI: the exports own their arguments and
// free them; what they return is malloc'd and freed by the bindings after the host has
// copied it.
// A word is a run of letters, digits and apostrophes; outside ASCII every character
// counts as a letter and keeps its case (wasi-libc has no Unicode tables).

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"
#include "weir.h"

static bool lowercase = true;

// Strings the bindings will free must come from malloc.
static void set_message(transform_string_t *out, const char *message) {
    transform_string_dup(out, message);
}

static bool string_equals(const transform_string_t *s, const char *text) {
    size_t len = strlen(text);
    return s->len == len && memcmp(s->ptr, text, len) == 0;
}

bool exports_transform_init(transform_list_tuple2_string_string_t *config, transform_string_t *err) {
    bool ok = true;
    lowercase = true;
    for (size_t i = 0; i < config->len && ok; i++) {
        transform_tuple2_string_string_t *entry = &config->ptr[i];
        if (!string_equals(&entry->f0, "lowercase")) continue;
        if (string_equals(&entry->f1, "true")) {
            lowercase = true;
        } else if (string_equals(&entry->f1, "false")) {
            lowercase = false;
        } else {
            char message[256];
            snprintf(message, sizeof message,
                     "config \"lowercase\" must be \"true\" or \"false\", not \"%.*s\"",
                     (int)(entry->f1.len > 64 ? 64 : entry->f1.len), (const char *)entry->f1.ptr);
            set_message(err, message);
            ok = false;
        }
    }
    transform_list_tuple2_string_string_free(config);
    return ok;
}

// Whether bytes[0..len) is well-formed UTF-8 (no overlongs, surrogates or values past
// U+10FFFF), as Rust's str::from_utf8 decides.
static bool valid_utf8(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c == 0xE0) { n = 2; lo = 0xA0; }
        else if (c == 0xED) { n = 2; hi = 0x9F; }
        else if (c >= 0xE1 && c <= 0xEF) n = 2;
        else if (c == 0xF0) { n = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) n = 3;
        else if (c == 0xF4) { n = 3; hi = 0x8F; }
        else return false;
        if (i + n >= len) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k <= n; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
        }
        i += n + 1;
    }
    return true;
}

static bool is_word_byte(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'' || c >= 0x80;
}

// Count one word: state `count/<word>` + 1, and emit (word, count).
static void count_word(const uint8_t *word, size_t len, int64_t timestamp, weir_outputs_t *outs) {
    static const char prefix[] = "count/";
    size_t key_len = sizeof prefix - 1 + len;
    uint8_t *key_bytes = malloc(key_len);
    if (!key_bytes) abort();
    memcpy(key_bytes, prefix, sizeof prefix - 1);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = word[i];
        key_bytes[sizeof prefix - 1 + i] = (lowercase && c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
    }
    transform_list_u8_t key = {key_bytes, key_len};

    unsigned long long count = 0;
    transform_list_u8_t stored;
    if (weir_transform_state_get(&key, &stored)) {
        char digits[32] = {0};
        memcpy(digits, stored.ptr, stored.len < sizeof digits - 1 ? stored.len : sizeof digits - 1);
        count = strtoull(digits, NULL, 10);
        transform_list_u8_free(&stored);
    }
    count++;

    char text[32];
    int text_len = snprintf(text, sizeof text, "%llu", count);
    transform_list_u8_t value = {(uint8_t *)text, (size_t)text_len};
    weir_transform_state_put(&key, &value);

    weir_outputs_add(outs, (weir_bytes_t){key_bytes + sizeof prefix - 1, len},
                     (weir_bytes_t){(const uint8_t *)text, (size_t)text_len}, timestamp);
    free(key_bytes);
}

bool exports_transform_process(transform_input_batch_t *batch, transform_output_batch_t *ret,
                               transform_record_error_t *err) {
    weir_outputs_t outs = {0};
    bool ok = true;
    weir_records_t records = weir_records(batch);
    weir_record_t record;
    while (ok && weir_records_next(&records, &record)) {
        const uint8_t *text = record.value.ptr ? record.value.ptr : (const uint8_t *)"";
        size_t len = record.value.len;
        if (!valid_utf8(text, len)) {
            err->index = (uint32_t)record.index;
            set_message(&err->message, "the record's value is not UTF-8 text");
            ok = false;
            break;
        }
        size_t start = 0;
        while (start < len) {
            while (start < len && !is_word_byte(text[start])) start++;
            size_t end = start;
            while (end < len && is_word_byte(text[end])) end++;
            if (end > start) count_word(text + start, end - start, record.timestamp, &outs);
            start = end;
        }
    }
    transform_input_batch_free(batch);
    if (!ok) {
        weir_outputs_free(&outs);
        return false;
    }
    weir_outputs_finish(&outs, ret);
    return true;
}
