/* A decoder of the tf.train.Example wire format for chosen features.
 *
 *   Example  { Features features = 1; }
 *   Features { map<string, Feature> feature = 1; }    (entries: key = 1, value = 2)
 *   Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
 *                           Int64List int64_list = 3; } }
 *   BytesList { repeated bytes value = 1; }   FloatList { repeated float value = 1 [packed]; }
 *   Int64List { repeated int64 value = 1 [packed]; }
 *
 * Why not a library: tfx-bsl parses every record into a protobuf message
 * with all its features and then copies the wanted ones into Arrow builders
 * (about 2 us per record here); this walks the bytes once and writes the
 * wanted values straight into the column buffers (pipeline/tfrecord.py
 * says how much faster). It must accept and refuse exactly what protobuf's
 * C++ parser does, and give the values protobuf's merge rules give; that
 * is tested against TensorFlow's and tfx-bsl's parsers (tests/test_example_decoder.py):
 * - tags are varints of at most 5 bytes (truncated to 32 bits), other
 *   varints at most 10, lengths at most 5 (< 2^31 - 16); field number 0,
 *   wire types 6 and 7, and end-group tags outside their group are errors;
 * - a field with an unexpected wire type is an unknown field, and unknown
 *   fields (groups included) are skipped; nesting (messages and groups) is
 *   limited to protobuf's default recursion limit of 100;
 * - packed floats must fill whole 4-byte values; repeated scalars may come
 *   packed or not, in any number of pieces;
 * - map keys (proto3 strings) must be valid UTF-8;
 * - a later map entry with the same key replaces the earlier one; within an
 *   entry the last key counts and values are merged; in a Feature, a list of
 *   another kind replaces the current one, a list of the same kind extends it.
 */
#include "_example.h"

#include <stdlib.h>
#include <string.h>

#define RECURSION_LIMIT 100 /* protobuf's default */
#define MAX_LENGTH (INT32_MAX - 16)

/* ---- growable buffers --------------------------------------------------- */

static int reserve(ex_buffer *b, size_t extra) {
    if (b->capacity - b->size >= extra) return 0;
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity - b->size < extra) {
        if (capacity > SIZE_MAX / 2) return -1;
        capacity *= 2;
    }
    char *data = realloc(b->data, capacity);
    if (data == NULL) return -1;
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int append(ex_buffer *b, const void *data, size_t size) {
    if (reserve(b, size) < 0) return -1;
    memcpy(b->data + b->size, data, size);
    b->size += size;
    return 0;
}

int ex_column_init(ex_column *c) {
    memset(&c->validity, 0, sizeof(*c) - offsetof(ex_column, validity));
    int64_t zero = 0;
    if (append(&c->offsets, &zero, 8) < 0) return -1;
    if (c->kind == EX_BYTES && append(&c->values, &zero, 8) < 0) return -1;
    return 0;
}

void ex_column_free(ex_column *c) {
    free(c->validity.data);
    free(c->offsets.data);
    free(c->values.data);
    free(c->data.data);
    memset(&c->validity, 0, sizeof(*c) - offsetof(ex_column, validity));
}

/* ---- the record being decoded -------------------------------------------- */

typedef struct {
    ex_column *columns;
    int count;
    const uint8_t *record;
    const char *reason; /* why the record is malformed */
    const uint8_t *where;
    int no_memory;
    ex_buffer *entries; /* ex_entries: every map entry, else NULL */
    int entry_kind;     /* kind of the current entry's value so far */
} parser;

static int fail(parser *ps, const uint8_t *where, const char *reason) {
    ps->reason = reason;
    ps->where = where;
    return -1;
}

static int out_of_memory(parser *ps) {
    ps->no_memory = 1;
    return -1;
}

/* Drops the values the current record has added to a column. */
static void rewind_row(ex_column *c) {
    c->value_count = c->row_values;
    if (c->kind == EX_BYTES) {
        c->values.size = (size_t)(c->row_values + 1) * 8;
        c->data.size = c->row_data;
    } else {
        c->values.size = (size_t)c->row_values * (c->kind == EX_FLOAT ? 4 : 8);
    }
}

/* ---- wire format primitives (as protobuf's parse_context.h reads them) ---- */
/* Each has a fast path for the one-byte case, the usual one. */

static int read_tag_slow(const uint8_t **pp, const uint8_t *end, uint32_t *tag) {
    const uint8_t *p = *pp;
    uint32_t result = 0;
    for (int i = 0; i < 5 && p < end; i++) {
        uint32_t byte = *p++;
        result |= (byte & 0x7F) << (7 * i); /* bits past 32 are dropped, as protobuf does */
        if (byte < 0x80) {
            *pp = p;
            *tag = result;
            return 0;
        }
    }
    return -1;
}

static inline int read_tag(const uint8_t **pp, const uint8_t *end, uint32_t *tag) {
    if (*pp < end && **pp < 0x80) {
        *tag = *(*pp)++;
        return 0;
    }
    return read_tag_slow(pp, end, tag);
}

static int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *value) {
    const uint8_t *p = *pp;
    uint64_t result = 0;
    for (int i = 0; i < 10 && p < end; i++) {
        uint64_t byte = *p++;
        result |= (byte & 0x7F) << (7 * i);
        if (byte < 0x80) {
            *pp = p;
            *value = result;
            return 0;
        }
    }
    return -1;
}

/* A length: at most 5 bytes, below 2^31 - 16, and within the message. */
static int read_length_slow(parser *ps, const uint8_t **pp, const uint8_t *end, const uint8_t **body) {
    const uint8_t *p = *pp;
    uint32_t length = 0;
    for (int i = 0;; i++) {
        if (p >= end) return fail(ps, *pp, "truncated length");
        uint32_t byte = *p++;
        if (i == 4 && byte >= 8) return fail(ps, *pp, "bad length varint (over 5 bytes or 2 GiB)");
        length |= (byte & 0x7F) << (7 * i);
        if (byte < 0x80) break;
    }
    if (length > MAX_LENGTH) return fail(ps, *pp, "length of 2 GiB or more");
    if (length > (size_t)(end - p)) return fail(ps, *pp, "length past the end of its message");
    *body = p;
    *pp = p + length;
    return 0;
}

static inline int read_length(parser *ps, const uint8_t **pp, const uint8_t *end, const uint8_t **body) {
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) {
        size_t length = *p++;
        if (length > (size_t)(end - p)) return fail(ps, *pp, "length past the end of its message");
        *body = p;
        *pp = p + length;
        return 0;
    }
    return read_length_slow(ps, pp, end, body);
}

/* The next tag of a message body (in a group, end-group tags are allowed). */
static inline int next_tag(parser *ps, const uint8_t **pp, const uint8_t *end, uint32_t *tag, int in_group) {
    const uint8_t *at = *pp;
    if (read_tag(pp, end, tag) < 0) return fail(ps, at, "bad tag varint");
    uint32_t wire = *tag & 7;
    if ((*tag >> 3) != 0 && wire != 4 && wire <= 5) return 0; /* the usual case */
    if (wire == 4 && !in_group) return fail(ps, at, "end-group tag outside a group");
    if ((*tag >> 3) == 0) return fail(ps, at, "field number 0");
    if (wire > 5) return fail(ps, at, "invalid wire type");
    return 0;
}

static int skip_field(parser *ps, const uint8_t **pp, const uint8_t *end, uint32_t tag, int depth) {
    const uint8_t *p = *pp;
    switch (tag & 7) {
    case 0: {
        uint64_t ignored;
        if (read_varint(&p, end, &ignored) < 0) return fail(ps, p, "bad varint");
        break;
    }
    case 1:
        if (end - p < 8) return fail(ps, p, "truncated 64-bit value");
        p += 8;
        break;
    case 5:
        if (end - p < 4) return fail(ps, p, "truncated 32-bit value");
        p += 4;
        break;
    case 2: {
        const uint8_t *body;
        if (read_length(ps, &p, end, &body) < 0) return -1;
        break;
    }
    case 3:
        if (depth - 1 < 0) return fail(ps, p, "nested more than 100 deep");
        for (;;) {
            uint32_t inner;
            const uint8_t *at = p;
            if (p >= end) return fail(ps, p, "group without its end-group tag");
            if (next_tag(ps, &p, end, &inner, 1) < 0) return -1;
            if ((inner & 7) == 4) {
                if ((inner >> 3) != (tag >> 3)) return fail(ps, at, "end-group tag of another group");
                break;
            }
            if (skip_field(ps, &p, end, inner, depth - 1) < 0) return -1;
        }
        break;
    default: /* next_tag let no other wire type through */
        return fail(ps, p, "invalid wire type");
    }
    *pp = p;
    return 0;
}

/* ---- the messages --------------------------------------------------------- */

static uint64_t load_bytes(const uint8_t *s, size_t n) {
    uint64_t word = 0;
    memcpy(&word, s, n);
    return word;
}

/* The OR of s's bytes (high bit set: not ASCII), a word at a time. */
static uint64_t or_bytes(const uint8_t *s, size_t n) {
    uint64_t any = 0;
    if (n >= 8) {
        for (size_t i = 0; i + 8 <= n; i += 8) any |= load_bytes(s + i, 8);
        return any | load_bytes(s + n - 8, 8);
    }
    if (n >= 4) return load_bytes(s, 4) | load_bytes(s + n - 4, 4);
    return n ? (uint64_t)(s[0] | s[n / 2] | s[n - 1]) : 0;
}

static int utf8_valid(const uint8_t *s, size_t n) {
    if ((or_bytes(s, n) & 0x8080808080808080ull) == 0) return 1; /* ASCII, the usual case */
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int more;
        uint8_t low = 0x80, high = 0xBF; /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) more = 1;
        else if (c == 0xE0) more = 2, low = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) more = 2;
        else if (c == 0xED) more = 2, high = 0x9F;
        else if (c == 0xF0) more = 3, low = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) more = 3;
        else if (c == 0xF4) more = 3, high = 0x8F;
        else return 0;
        if (n - i <= (size_t)more) return 0;
        if (s[i + 1] < low || s[i + 1] > high) return 0;
        for (int k = 2; k <= more; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += 1 + more;
    }
    return 1;
}

/* A BytesList, FloatList or Int64List body; values go to `column` unless NULL. */
static int parse_list(parser *ps, int kind, const uint8_t *p, const uint8_t *end, int depth,
                      ex_column *column) {
    while (p < end) {
        uint32_t tag;
        if (next_tag(ps, &p, end, &tag, 0) < 0) return -1;
        int field = tag >> 3, wire = tag & 7;
        if (field == 1 && kind == EX_BYTES && wire == 2) {
            const uint8_t *body;
            if (read_length(ps, &p, end, &body) < 0) return -1;
            if (column) {
                size_t size = (size_t)(p - body);
                if (append(&column->data, body, size) < 0) return out_of_memory(ps);
                int64_t offset = (int64_t)column->data.size;
                if (append(&column->values, &offset, 8) < 0) return out_of_memory(ps);
                column->value_count++;
            }
        } else if (field == 1 && kind == EX_FLOAT && (wire == 2 || wire == 5)) {
            const uint8_t *body = p;
            if (wire == 2) {
                if (read_length(ps, &p, end, &body) < 0) return -1;
                if ((p - body) % 4) return fail(ps, body, "packed floats not a multiple of 4 bytes");
            } else {
                if (end - p < 4) return fail(ps, p, "truncated float");
                p += 4;
            }
            if (column) {
                if (append(&column->values, body, (size_t)(p - body)) < 0) return out_of_memory(ps);
                column->value_count += (p - body) / 4;
            }
        } else if (field == 1 && kind == EX_INT64 && (wire == 2 || wire == 0)) {
            const uint8_t *body = p, *stop;
            if (wire == 2) {
                if (read_length(ps, &p, end, &body) < 0) return -1;
                stop = p;
            } else {
                uint64_t ignored;
                if (read_varint(&p, end, &ignored) < 0) return fail(ps, body, "bad varint");
                stop = p;
            }
            /* At most one value per byte. */
            if (column && reserve(&column->values, (size_t)(stop - body) * 8) < 0) return out_of_memory(ps);
            for (const uint8_t *q = body; q < stop;) {
                uint64_t value;
                const uint8_t *at = q;
                if (read_varint(&q, stop, &value) < 0) return fail(ps, at, "bad varint in packed int64s");
                if (column) {
                    memcpy(column->values.data + column->values.size, &value, 8);
                    column->values.size += 8;
                    column->value_count++;
                }
            }
        } else {
            if (skip_field(ps, &p, end, tag, depth) < 0) return -1;
        }
    }
    return 0;
}

/* A Feature body; `column` (or NULL) is the column its entry's key names. */
static int parse_feature(parser *ps, const uint8_t *p, const uint8_t *end, int depth, ex_column *column) {
    while (p < end) {
        uint32_t tag;
        if (next_tag(ps, &p, end, &tag, 0) < 0) return -1;
        int field = tag >> 3;
        if ((field == EX_BYTES || field == EX_FLOAT || field == EX_INT64) && (tag & 7) == 2) {
            const uint8_t *body;
            if (read_length(ps, &p, end, &body) < 0) return -1;
            if (depth - 1 < 0) return fail(ps, body, "nested more than 100 deep");
            ps->entry_kind = field; /* the oneof's kind is the last list's */
            if (column && column->seen_kind != field) {
                /* Another kind replaces the oneof's list; the same kind extends it. */
                rewind_row(column);
                column->seen_kind = field;
            }
            ex_column *target = column && field == column->kind ? column : NULL;
            if (parse_list(ps, field, body, p, depth - 1, target) < 0) return -1;
        } else {
            if (skip_field(ps, &p, end, tag, depth) < 0) return -1;
        }
    }
    return 0;
}

static ex_column *column_named(parser *ps, const uint8_t *name, size_t size) {
    for (int i = 0; i < ps->count; i++) {
        ex_column *c = &ps->columns[i];
        if (c->name_size != size) continue;
        size_t k = 0; /* names are short: no memcmp call */
        while (k < size && (uint8_t)c->name[k] == name[k]) k++;
        if (k == size) return c;
    }
    return NULL;
}

/* A map entry (key = 1, value = 2) of Features. */
static int parse_entry(parser *ps, const uint8_t *p, const uint8_t *end, int depth) {
    /* First the key (the last one counts, and any may come after values). */
    const uint8_t *start = p, *key = (const uint8_t *)"", *value = NULL, *value_end = NULL;
    size_t key_size = 0;
    int values = 0;
    while (p < end) {
        uint32_t tag;
        if (next_tag(ps, &p, end, &tag, 0) < 0) return -1;
        int field = tag >> 3;
        if ((field == 1 || field == 2) && (tag & 7) == 2) {
            const uint8_t *body;
            if (read_length(ps, &p, end, &body) < 0) return -1;
            if (field == 1) {
                if (!utf8_valid(body, (size_t)(p - body))) return fail(ps, body, "feature name is not UTF-8");
                key = body;
                key_size = (size_t)(p - body);
            } else {
                value = body;
                value_end = p;
                values++;
            }
        } else {
            if (skip_field(ps, &p, end, tag, depth) < 0) return -1;
        }
    }
    ex_column *column = column_named(ps, key, key_size);
    if (column) { /* this entry replaces any earlier one of the same name */
        rewind_row(column);
        column->present = 1;
        column->seen_kind = 0;
    }
    if (values && depth - 1 < 0) return fail(ps, value, "nested more than 100 deep");
    ps->entry_kind = 0;
    if (values == 1) {
        if (parse_feature(ps, value, value_end, depth - 1, column) < 0) return -1;
    } else if (values > 1) { /* merged in order */
        for (p = start; p < end;) { /* (the first pass checked the framing) */
            uint32_t tag = 0;
            const uint8_t *body = NULL;
            if (next_tag(ps, &p, end, &tag, 0) < 0) return -1;
            if ((tag & 7) == 2) {
                if (read_length(ps, &p, end, &body) < 0) return -1;
                if ((tag >> 3) == 2 && parse_feature(ps, body, p, depth - 1, column) < 0) return -1;
            } else if (skip_field(ps, &p, end, tag, depth) < 0) {
                return -1;
            }
        }
    }
    if (ps->entries) {
        ex_entry entry = {(size_t)(key - ps->record), key_size, ps->entry_kind};
        if (key_size == 0) entry.key_offset = 0; /* the default key, "" */
        if (append(ps->entries, &entry, sizeof(entry)) < 0) return out_of_memory(ps);
    }
    return 0;
}

static int parse_message(parser *ps, const uint8_t *p, const uint8_t *end, int depth, int features) {
    while (p < end) {
        uint32_t tag;
        if (next_tag(ps, &p, end, &tag, 0) < 0) return -1;
        if ((tag >> 3) == 1 && (tag & 7) == 2) {
            const uint8_t *body;
            if (read_length(ps, &p, end, &body) < 0) return -1;
            if (depth - 1 < 0) return fail(ps, body, "nested more than 100 deep");
            int status = features ? parse_entry(ps, body, p, depth - 1)
                                  : parse_message(ps, body, p, depth - 1, 1);
            if (status < 0) return -1;
        } else {
            if (skip_field(ps, &p, end, tag, depth) < 0) return -1;
        }
    }
    return 0;
}

/* ---- a record ---------------------------------------------------------------- */

static int finish_row(ex_column *c) {
    int64_t row = c->rows;
    if (reserve(&c->validity, 1) < 0) return -1;
    if ((size_t)(row / 8) >= c->validity.size) c->validity.data[c->validity.size++] = 0;
    if (c->present && c->seen_kind == c->kind) {
        c->validity.data[row / 8] |= (char)(1 << (row % 8));
    } else {
        if (c->present && c->seen_kind) c->mismatched_rows++;
        rewind_row(c);
        c->null_count++;
    }
    if (append(&c->offsets, &c->value_count, 8) < 0) return -1;
    c->rows++;
    return 0;
}

int ex_entries(const uint8_t *record, size_t size, ex_buffer *entries, const char **reason, size_t *where) {
    parser ps = {NULL, 0, record, NULL, NULL, 0, entries, 0};
    if (parse_message(&ps, record, record + size, RECURSION_LIMIT, 0) < 0) {
        if (ps.no_memory) return EX_NO_MEMORY;
        *reason = ps.reason;
        *where = (size_t)(ps.where - record);
        return EX_MALFORMED;
    }
    return EX_OK;
}

int ex_decode(ex_column *columns, int count, const uint8_t *record, size_t size,
              const char **reason, size_t *where) {
    parser ps = {columns, count, record, NULL, NULL, 0, NULL, 0};
    for (int i = 0; i < count; i++) {
        ex_column *c = &columns[i];
        c->present = c->seen_kind = 0;
        c->row_values = c->value_count;
        c->row_data = c->data.size;
    }
    if (parse_message(&ps, record, record + size, RECURSION_LIMIT, 0) < 0) {
        for (int i = 0; i < count; i++) rewind_row(&columns[i]);
        if (ps.no_memory) return EX_NO_MEMORY;
        *reason = ps.reason;
        *where = (size_t)(ps.where - record);
        return EX_MALFORMED;
    }
    for (int i = 0; i < count; i++)
        if (finish_row(&columns[i]) < 0) return EX_NO_MEMORY;
    return EX_OK;
}
