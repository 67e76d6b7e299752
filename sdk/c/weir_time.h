// Event time for Weir transforms written in C (contract 0.3): timers, the fired
// timers an `on-timers` call gets, and tumbling or hopping windows of a 64-bit
// aggregate (a count or a sum) with the Rust SDK's rules and state layout, so a hot
// swap between a C and a Rust, Python or JavaScript module keeps the open windows.
// Session and sliding windows are in the Rust, Python and JavaScript SDKs.
//
// Header-only, over the bindings `wit-bindgen c` generates from wit/ (0.3): include it
// after weir.h in the one .c file that implements the exports.

#ifndef WEIR_TIME_H
#define WEIR_TIME_H

#include <inttypes.h>
#include <stdio.h>

#include "weir.h"

// ---- Timers -------------------------------------------------------------------------

// Have `exports_transform_on_timers` called with `key` once the watermark (with
// `processing`, the wall clock) reaches `at`. Setting one twice is one timer.
static inline void weir_timer_set(bool processing, int64_t at, weir_bytes_t key) {
    transform_list_u8_t list = {(uint8_t *)key.ptr, key.len};
    weir_transform_timers_set(processing ? WEIR_TRANSFORM_TYPES_TIME_DOMAIN_PROCESSING_TIME
                                         : WEIR_TRANSFORM_TYPES_TIME_DOMAIN_EVENT_TIME,
                              at, &list);
}

// Cancel a timer; cancelling one that is not set does nothing.
static inline void weir_timer_delete(bool processing, int64_t at, weir_bytes_t key) {
    transform_list_u8_t list = {(uint8_t *)key.ptr, key.len};
    weir_transform_timers_delete(processing ? WEIR_TRANSFORM_TYPES_TIME_DOMAIN_PROCESSING_TIME
                                            : WEIR_TRANSFORM_TYPES_TIME_DOMAIN_EVENT_TIME,
                                 at, &list);
}

// One fired timer; its key points into the call's `fired` argument.
typedef struct {
    size_t index;
    int64_t at;
    weir_bytes_t key;
    bool processing;
} weir_timer_t;

typedef struct {
    const transform_fired_timers_t *fired;
    size_t next, key_at;
} weir_timers_t;

static inline weir_timers_t weir_timers(const transform_fired_timers_t *fired) {
    return (weir_timers_t){fired, 0, 0};
}

// The next fired timer into `timer`; false after the last one.
static inline bool weir_timers_next(weir_timers_t *walk, weir_timer_t *timer) {
    const transform_fired_timers_t *f = walk->fired;
    if (walk->next >= f->times.len) return false;
    size_t i = walk->next++;
    timer->index = i;
    timer->at = f->times.ptr[i];
    timer->key = (weir_bytes_t){f->keys.ptr + walk->key_at, f->key_lens.ptr[i]};
    timer->processing = f->domain == WEIR_TRANSFORM_TYPES_TIME_DOMAIN_PROCESSING_TIME;
    walk->key_at += f->key_lens.ptr[i];
    return true;
}

// ---- Tumbling and hopping windows ----------------------------------------------------

// What happens to a record whose windows have all closed.
typedef enum {
    WEIR_LATE_DROP,
    // The record fails: the pipeline's `on_error` dead-letters (or skips) it.
    WEIR_LATE_DEAD_LETTER,
    // The record goes, key and value, to `side_topic`.
    WEIR_LATE_SIDE_OUTPUT,
} weir_late_t;

// Windows of `size` ms starting every `advance` ms (equal: tumbling), aligned to the
// epoch, closing `grace` ms after their end, emitted once when closed or, with
// `on_update`, after every change. State under `<name>/w/<start><key>` (start: 8 bytes
// big-endian), the value a JSON integer; close timers `<name>/c<start><key>`.
typedef struct {
    const char *name;
    int64_t size, advance, grace;
    bool on_update;
    weir_late_t late;
    const char *side_topic;
} weir_windows_t;

// A window's value, as emitted; `key` points into the record or timer it came from.
typedef struct {
    weir_bytes_t key;
    int64_t start, end, value;
    bool is_final;
} weir_window_result_t;

// At most this many windows hold one record (size / advance, rounded up, plus one).
#define WEIR_MAX_HOPS 64

// Timestamps, sizes and grace periods up to this (2^61 ms, some 73 million years): three
// of them add up without overflowing an int64_t, which C does not saturate.
#define WEIR_MAX_TIME ((int64_t)1 << 61)

// NULL if `w` makes windows, else why not.
static inline const char *weir_windows_check(const weir_windows_t *w) {
    if (!w->name || !w->name[0] || strchr(w->name, '/')) return "a windowed aggregate's name must be non-empty and without '/'";
    if (w->size <= 0 || w->advance <= 0) return "a window's size and advance must be positive numbers of milliseconds";
    if (w->advance > w->size) return "a hopping window's advance is longer than its size: records between windows would be lost";
    if (w->size / w->advance >= WEIR_MAX_HOPS) return "a hopping window's size is more than 63 advances";
    if (w->size > WEIR_MAX_TIME || w->grace < 0 || w->grace > WEIR_MAX_TIME) return "a window's size or grace is out of range (0 to 2^61 ms)";
    if (w->late == WEIR_LATE_SIDE_OUTPUT && (!w->side_topic || !w->side_topic[0])) return "a side output needs a topic";
    return NULL;
}

// `<name>/<kind>` then `extra` (8 bytes, big-endian) and `key`, into malloc'd memory.
static inline transform_list_u8_t weir_windows_key(const weir_windows_t *w, const char *kind, int64_t extra, weir_bytes_t key) {
    size_t name_len = strlen(w->name), kind_len = strlen(kind);
    transform_list_u8_t out = {malloc(name_len + 1 + kind_len + 8 + key.len), name_len + 1 + kind_len + 8 + key.len};
    if (!out.ptr) abort();
    uint8_t *at = out.ptr;
    memcpy(at, w->name, name_len);
    at += name_len;
    *at++ = '/';
    memcpy(at, kind, kind_len);
    at += kind_len;
    for (int b = 7; b >= 0; b--) *at++ = (uint8_t)((uint64_t)extra >> (8 * b));
    if (key.len) memcpy(at, key.ptr, key.len);
    return out;
}

static inline bool weir_windows_read(transform_list_u8_t *state_key, int64_t *value) {
    transform_list_u8_t stored;
    if (!weir_transform_state_get(state_key, &stored)) return false;
    char digits[32] = {0};
    memcpy(digits, stored.ptr, stored.len < sizeof digits - 1 ? stored.len : sizeof digits - 1);
    *value = strtoll(digits, NULL, 10);
    transform_list_u8_free(&stored);
    return true;
}

// Add a record at `timestamp` under `key` contributing `input` (1 for a count), as it
// meets `watermark`. Fills `updates` (room for WEIR_MAX_HOPS) under `on_update` and
// returns how many; returns -1 for a late record (every window it would be in has
// closed), whose `late` policy is the caller's to apply, -2 for a timestamp below 0 or
// past WEIR_MAX_TIME. `w` must have passed `weir_windows_check`.
static inline int weir_windows_add(const weir_windows_t *w, int64_t watermark, weir_bytes_t key, int64_t timestamp,
                                   int64_t input, weir_window_result_t *updates) {
    if (timestamp < 0 || timestamp > WEIR_MAX_TIME) return -2;
    int64_t rem = timestamp % w->advance;
    if (rem < 0) rem += w->advance;
    int64_t first = timestamp - rem;
    while (first - w->advance > timestamp - w->size) first -= w->advance;
    int count = 0;
    bool added = false;
    for (int64_t start = first; start <= timestamp; start += w->advance) {
        int64_t end = start + w->size, close = end + w->grace;
        if (close <= watermark) continue;
        added = true;
        transform_list_u8_t state_key = weir_windows_key(w, "w/", start, key);
        int64_t value = 0;
        weir_windows_read(&state_key, &value);
        value += input;
        char text[32];
        int len = snprintf(text, sizeof text, "%" PRId64, value);
        transform_list_u8_t stored = {(uint8_t *)text, (size_t)len};
        weir_transform_state_put(&state_key, &stored);
        transform_list_u8_t timer_key = weir_windows_key(w, "c", start, key);
        weir_timer_set(false, close, (weir_bytes_t){timer_key.ptr, timer_key.len});
        transform_list_u8_free(&timer_key);
        transform_list_u8_free(&state_key);
        if (w->on_update) updates[count++] = (weir_window_result_t){key, start, end, value, false};
    }
    return added ? count : -1;
}

// Close the window of `timer` if it is one of `w`'s: returns false for a timer it did
// not set; else true, with `*closed` set to its value (final) when `w` emits on close
// and the window held one, `closed->key.ptr` NULL otherwise. Its state goes either way.
static inline bool weir_windows_on_timer(const weir_windows_t *w, const weir_timer_t *timer, weir_window_result_t *closed) {
    size_t name_len = strlen(w->name);
    memset(closed, 0, sizeof *closed);
    if (timer->processing || timer->key.len < name_len + 10 || memcmp(timer->key.ptr, w->name, name_len) != 0 ||
        timer->key.ptr[name_len] != '/' || timer->key.ptr[name_len + 1] != 'c') {
        return false;
    }
    uint64_t start = 0;
    for (size_t b = 0; b < 8; b++) start = (start << 8) | timer->key.ptr[name_len + 2 + b];
    weir_bytes_t key = {timer->key.ptr + name_len + 10, timer->key.len - name_len - 10};
    transform_list_u8_t state_key = weir_windows_key(w, "w/", (int64_t)start, key);
    int64_t value;
    bool held = weir_windows_read(&state_key, &value);
    weir_transform_state_delete(&state_key);
    transform_list_u8_free(&state_key);
    if (held && !w->on_update) {
        *closed = (weir_window_result_t){key, (int64_t)start, (int64_t)start + w->size, value, true};
    }
    return true;
}

// Emit `record` as it is (key, value, timestamp) to `topic`: a late record's side output.
static inline void weir_outputs_add_to(weir_outputs_t *outs, const char *topic, weir_bytes_t key, weir_bytes_t value,
                                       int64_t timestamp) {
    WEIR_PUSH(outs->header_counts, 0);
    WEIR_PUSH(outs->key_lens, weir_outputs_bytes(outs, key));
    WEIR_PUSH(outs->value_lens, weir_outputs_bytes(outs, value));
    WEIR_PUSH(outs->topic_lens, weir_outputs_bytes(outs, (weir_bytes_t){(const uint8_t *)topic, strlen(topic)}));
    WEIR_PUSH(outs->timestamps, timestamp);
}

#endif
