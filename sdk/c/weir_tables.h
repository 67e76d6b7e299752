// Tables for Weir transforms written in C (contract 0.3.1): reads of the tables the
// pipeline declares (`[pipelines.NAME.tables.<table>]`), compacted topics the host keeps
// materialized for the partition being processed, as of the record's timestamp. Read
// only. Include it after weir.h in a transform built against wit/ (0.3.1 or later).

#ifndef WEIR_TABLES_H
#define WEIR_TABLES_H

#include "weir.h"

// The row of `key` in table `table`; false when the key has none. The row is the
// caller's: free it with `transform_list_u8_free`. A stream-table join is this lookup
// by the record's key: an inner join skips a record without a row, a left join goes on
// without one.
static inline bool weir_table_get(const char *table, weir_bytes_t key, transform_list_u8_t *row) {
    transform_string_t name = {(uint8_t *)table, strlen(table)};
    transform_list_u8_t k = {(uint8_t *)key.ptr, key.len};
    return weir_transform_tables_get(&name, &k, row);
}

#endif
