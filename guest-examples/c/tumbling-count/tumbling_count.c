// Counts records per key in tumbling event-time windows and emits each window's count
// once, when it closes (the watermark passes its end plus a grace period), as the Rust
// example does, with the same state: a pipeline can swap one for the other and keep
// its open windows. Config: `window_ms` (default one minute), `grace_ms` (default
// 10 s), `emit` (`close` or `update`), `late` (`drop`, `dead-letter` or
// `side-output:<topic>`; a side output carries key, value and timestamp).
//
// Built against contract 0.3 (wit/), with the helpers of weir.h and weir_time.h.

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"
#include "weir.h"
#include "weir_time.h"

static weir_windows_t windows = {"count", 60000, 60000, 10000, false, WEIR_LATE_DROP, NULL};
static char side_topic[256];

static void set_message(transform_string_t *out, const char *message) {
    transform_string_dup(out, message);
}

static bool string_equals(const transform_string_t *s, const char *text) {
    size_t len = strlen(text);
    return s->len == len && memcmp(s->ptr, text, len) == 0;
}

// `value` as a whole number of milliseconds into `*out`; false if it is not one.
static bool parse_ms(const transform_string_t *value, int64_t *out) {
    char digits[32] = {0};
    if (value->len == 0 || value->len >= sizeof digits) return false;
    memcpy(digits, value->ptr, value->len);
    char *end;
    *out = strtoll(digits, &end, 10);
    return *end == '\0';
}

static bool configure(const transform_tuple2_string_string_t *entry, transform_string_t *err) {
    const transform_string_t *value = &entry->f1;
    char message[512];
    if (string_equals(&entry->f0, "window_ms") || string_equals(&entry->f0, "grace_ms")) {
        int64_t ms;
        if (!parse_ms(value, &ms)) {
            snprintf(message, sizeof message, "config \"%.*s\" must be a number of milliseconds", (int)entry->f0.len,
                     (const char *)entry->f0.ptr);
            set_message(err, message);
            return false;
        }
        if (string_equals(&entry->f0, "window_ms")) {
            windows.size = windows.advance = ms;
        } else {
            windows.grace = ms < 0 ? 0 : ms;
        }
    } else if (string_equals(&entry->f0, "emit")) {
        if (string_equals(value, "update")) {
            windows.on_update = true;
        } else if (string_equals(value, "close") || string_equals(value, "final")) {
            windows.on_update = false;
        } else {
            set_message(err, "unknown emit mode: use `update` or `close`");
            return false;
        }
    } else if (string_equals(&entry->f0, "late")) {
        const char *side = "side-output:";
        size_t side_len = strlen(side);
        if (string_equals(value, "drop")) {
            windows.late = WEIR_LATE_DROP;
        } else if (string_equals(value, "dead-letter")) {
            windows.late = WEIR_LATE_DEAD_LETTER;
        } else if (value->len > side_len && value->len - side_len < sizeof side_topic &&
                   memcmp(value->ptr, side, side_len) == 0) {
            memcpy(side_topic, value->ptr + side_len, value->len - side_len);
            side_topic[value->len - side_len] = '\0';
            windows.late = WEIR_LATE_SIDE_OUTPUT;
            windows.side_topic = side_topic;
        } else {
            set_message(err, "unknown late-record policy: use `drop`, `dead-letter` or `side-output:<topic>`");
            return false;
        }
    }
    return true;
}

bool exports_transform_init(transform_list_tuple2_string_string_t *config, transform_string_t *err) {
    windows = (weir_windows_t){"count", 60000, 60000, 10000, false, WEIR_LATE_DROP, NULL};
    bool ok = true;
    for (size_t i = 0; i < config->len && ok; i++) ok = configure(&config->ptr[i], err);
    const char *bad = ok ? weir_windows_check(&windows) : NULL;
    if (bad) {
        set_message(err, bad);
        ok = false;
    }
    transform_list_tuple2_string_string_free(config);
    return ok;
}

static void send(weir_outputs_t *outs, const weir_window_result_t *result, int64_t timestamp) {
    char json[128];
    int len = snprintf(json, sizeof json, "{\"window_start\":%" PRId64 ",\"window_end\":%" PRId64 ",\"count\":%" PRId64 "}",
                       result->start, result->end, result->value);
    weir_outputs_add(outs, result->key, (weir_bytes_t){(const uint8_t *)json, (size_t)len}, timestamp);
}

bool exports_transform_process(transform_input_batch_t *batch, transform_output_batch_t *ret,
                               transform_record_error_t *err) {
    weir_outputs_t outs = {0};
    bool ok = true;
    weir_records_t records = weir_records(batch);
    weir_record_t record;
    weir_window_result_t updates[WEIR_MAX_HOPS];
    while (ok && weir_records_next(&records, &record)) {
        int64_t watermark = batch->watermarks.ptr[record.index];
        weir_bytes_t key = record.key.ptr ? record.key : (weir_bytes_t){(const uint8_t *)"", 0};
        int n = weir_windows_add(&windows, watermark, key, record.timestamp, 1, updates);
        char message[256];
        if (n == -2) {
            snprintf(message, sizeof message,
                     "the record at offset %" PRId64 " has no usable timestamp (%" PRId64 "): windows need event time",
                     record.offset, record.timestamp);
        } else if (n == -1 && windows.late == WEIR_LATE_DEAD_LETTER) {
            snprintf(message, sizeof message, "late record: its window of count has closed, and the watermark is %" PRId64,
                     watermark);
        } else {
            if (n == -1 && windows.late == WEIR_LATE_SIDE_OUTPUT) {
                weir_outputs_add_to(&outs, windows.side_topic, record.key, record.value, record.timestamp);
            }
            for (int i = 0; i < n; i++) send(&outs, &updates[i], record.timestamp);
            continue;
        }
        err->index = (uint32_t)record.index;
        set_message(&err->message, message);
        ok = false;
    }
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
    weir_outputs_t outs = {0};
    weir_timers_t timers = weir_timers(fired);
    weir_timer_t timer;
    while (weir_timers_next(&timers, &timer)) {
        weir_window_result_t closed;
        if (weir_windows_on_timer(&windows, &timer, &closed) && closed.key.ptr) send(&outs, &closed, timer.at);
    }
    transform_fired_timers_free(fired);
    weir_outputs_finish(&outs, ret);
    return true;
}
