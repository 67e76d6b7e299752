// An enrichment join, as the Rust example does: orders (keyed by customer id) joined
// with the pipeline's `customers` table, each sent on as
// `{"order": <the order>, "customer": <the row>}` under the customer id (the order and
// the row are JSON documents already: they are spliced in, not parsed). Config: `join`
// = `inner` (the default: an order of an unknown customer is dropped) or `left` (it
// goes on with `"customer": null`).
//
// Built against contract 0.3.1 (wit/), with the helpers of weir.h and weir_tables.h.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"
#include "weir.h"
#include "weir_tables.h"

static bool left = false;

static bool string_equals(const transform_string_t *s, const char *text) {
    size_t len = strlen(text);
    return s->len == len && memcmp(s->ptr, text, len) == 0;
}

bool exports_transform_init(transform_list_tuple2_string_string_t *config, transform_string_t *err) {
    bool ok = true;
    left = false;
    for (size_t i = 0; i < config->len && ok; i++) {
        transform_tuple2_string_string_t *entry = &config->ptr[i];
        if (!string_equals(&entry->f0, "join")) continue;
        if (string_equals(&entry->f1, "left")) {
            left = true;
        } else if (!string_equals(&entry->f1, "inner")) {
            char message[256];
            snprintf(message, sizeof message, "join = \"%.*s\": use \"inner\" or \"left\"",
                     (int)(entry->f1.len > 64 ? 64 : entry->f1.len), (const char *)entry->f1.ptr);
            transform_string_dup(err, message);
            ok = false;
        }
    }
    transform_list_tuple2_string_string_free(config);
    return ok;
}

// Append `bytes` to the growing `out` of `*len` bytes (room for `*cap`).
static void append(uint8_t **out, size_t *len, size_t *cap, const void *bytes, size_t n) {
    *out = weir_grow(*out, cap, *len + n, 1);
    memcpy(*out + *len, bytes, n);
    *len += n;
}

bool exports_transform_process(transform_input_batch_t *batch, transform_output_batch_t *ret,
                               transform_record_error_t *err) {
    weir_outputs_t outs = {0};
    bool ok = true;
    weir_records_t records = weir_records(batch);
    weir_record_t record;
    uint8_t *json = NULL;
    size_t cap = 0;
    while (weir_records_next(&records, &record)) {
        if (!record.key.ptr) {
            err->index = (uint32_t)record.index;
            transform_string_dup(&err->message, "an order needs its customer id as its key");
            ok = false;
            break;
        }
        transform_list_u8_t row;
        bool found = weir_table_get("customers", record.key, &row);
        if (!found && !left) continue;
        size_t len = 0;
        append(&json, &len, &cap, "{\"order\":", 9);
        if (record.value.ptr) {
            append(&json, &len, &cap, record.value.ptr, record.value.len);
        } else {
            append(&json, &len, &cap, "null", 4);
        }
        append(&json, &len, &cap, ",\"customer\":", 12);
        if (found) {
            append(&json, &len, &cap, row.ptr, row.len);
            transform_list_u8_free(&row);
        } else {
            append(&json, &len, &cap, "null", 4);
        }
        append(&json, &len, &cap, "}", 1);
        weir_outputs_add(&outs, record.key, (weir_bytes_t){json, len}, record.timestamp);
    }
    free(json);
    transform_input_batch_free(batch);
    if (!ok) {
        weir_outputs_free(&outs);
        return false;
    }
    weir_outputs_finish(&outs, ret);
    return true;
}

bool exports_transform_on_timers(transform_fired_timers_t *fired, transform_output_batch_t *ret,
                                 transform_record_error_t *err) {
    (void)err;
    transform_fired_timers_free(fired);
    weir_outputs_t outs = {0};
    weir_outputs_finish(&outs, ret);
    return true;
}
