/* Decoding chosen features of serialized tf.train.Examples into Arrow
 * buffers (pipeline/_example.c; the Python glue is in _tfrecord.c).
 *
 * Each requested feature is one column, laid out as an Arrow
 * large_list<float32 | int64 | large_binary>: a validity bitmap, int64 list
 * offsets, and the values (for bytes: int64 value offsets and the data).
 * Rows are appended one record at a time by ex_decode.
 */
#ifndef PIPELINE_EXAMPLE_H
#define PIPELINE_EXAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* Feature kinds: the field numbers of tensorflow.Feature's `kind` oneof. */
#define EX_BYTES 1
#define EX_FLOAT 2
#define EX_INT64 3

/* ex_decode results. */
#define EX_OK 0
#define EX_MALFORMED 1 /* not a tf.train.Example: `reason`, `where` say why */
#define EX_NO_MEMORY 2

typedef struct {
    char *data;
    size_t size, capacity;
} ex_buffer;

typedef struct {
    /* set by the caller before ex_column_init */
    const char *name;
    size_t name_size;
    int kind; /* EX_FLOAT, EX_INT64 or EX_BYTES */

    /* the column so far */
    ex_buffer validity; /* bit per row, 1 = a list */
    ex_buffer offsets;  /* int64 per row + 1, into the values */
    ex_buffer values;   /* float32 / int64 values; bytes: int64 offsets into `data`, per value + 1 */
    ex_buffer data;     /* bytes values, concatenated */
    int64_t rows, null_count, value_count;
    int64_t mismatched_rows; /* rows where the feature had another kind (left null) */

    /* the record being decoded */
    int present;         /* an entry with this name was seen */
    int seen_kind;       /* kind of its value so far (0: not set) */
    int64_t row_values;  /* value_count before this record */
    size_t row_data;     /* data.size before this record */
} ex_column;

int ex_column_init(ex_column *column);
void ex_column_free(ex_column *column);

/* Appends one row to every column from a serialized tf.train.Example.
 *
 * Parses the whole record as protobuf's parser does (every field of every
 * feature is checked, unknown fields are skipped, map keys must be UTF-8,
 * a later entry with the same name replaces an earlier one, and so on), so
 * a record is malformed exactly when protobuf would refuse it. A feature
 * that is absent, has no kind, or has another kind than its column gives a
 * null row (the last case also counts in mismatched_rows). On EX_MALFORMED
 * the columns are unchanged, *reason says why and *where is the byte of
 * the record where the problem was found.
 */
int ex_decode(ex_column *columns, int count, const uint8_t *record, size_t size,
              const char **reason, size_t *where);

/* A map entry of Features: its key (bytes at key_offset of the record) and
 * the kind its value ends with after protobuf's merges (0: none). */
typedef struct {
    size_t key_offset, key_size;
    int kind;
} ex_entry;

/* Appends every map entry of a serialized tf.train.Example to *entries (an
 * array of ex_entry), in order; a later entry of the same key replaces an
 * earlier one. Results and malformed records as ex_decode. */
int ex_entries(const uint8_t *record, size_t size, ex_buffer *entries, const char **reason, size_t *where);

#endif
