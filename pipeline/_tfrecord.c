/* TFRecord framing and tf.train.Example decoding without TensorFlow.
 *
 * A TFRecord file is a sequence of records, each
 *     uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)
 * (little-endian). Finding the records is a walk from one header to the
 * next, so it cannot be vectorised in numpy; this is that walk, in C, with
 * both CRCs checked as TensorFlow's record reader checks them (with the
 * CPU's CRC-32C instruction where there is one). Importing TensorFlow to
 * read the framing costs 3-6 s per process; this module imports in
 * microseconds.
 *
 * decode_examples decodes chosen features of the records straight into
 * Arrow buffers (the wire format decoder is _example.c). Both release the
 * GIL while they work, so pipeline/read.py decodes on other threads while
 * the main one evaluates. pipeline/tfrecord.py drives all of it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_example.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define HAVE_SSE42_CRC 1
#endif

#define HEADER_BYTES 12 /* length + its CRC */
#define FRAME_BYTES 16  /* header + the data's CRC */

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ------------------ */

static uint32_t crc_table[8][256];

static void init_crc_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

static uint32_t load_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_u64(const unsigned char *p) {
    return (uint64_t)load_u32(p) | (uint64_t)load_u32(p + 4) << 32;
}

/* Slicing by 8: about 1 GB/s. */
static uint32_t crc32c_table(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t lo = load_u32(p) ^ c, hi = load_u32(p + 4);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
            crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
            crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
            crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

#ifdef HAVE_SSE42_CRC
/* SSE4.2's crc32 instruction computes CRC-32C: several times faster. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(const unsigned char *p, size_t n) {
    uint64_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return c32 ^ 0xFFFFFFFFu;
}
#endif

static uint32_t (*crc32c)(const unsigned char *, size_t) = crc32c_table;

/* TFRecord stores CRCs masked (rotated and offset), as leveldb does. */
static uint32_t masked_crc32c(const unsigned char *p, size_t n) {
    uint32_t c = crc32c(p, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/* ---- framing ------------------------------------------------------------------- */

typedef struct {
    size_t pos;         /* offset after the last whole record */
    uint64_t needed;    /* see split_records' doc */
    const char *problem;
} frame_state;

/* The record at state->pos, CRC-checked: its data and length; 0 when there
 * is none whole (state->needed or state->problem say why). */
static int next_record(const unsigned char *data, size_t size, frame_state *state,
                       const unsigned char **payload, size_t *length_out) {
    size_t left = size - state->pos;
    if (left < HEADER_BYTES) {
        state->needed = HEADER_BYTES;
        return 0;
    }
    const unsigned char *header = data + state->pos;
    if (masked_crc32c(header, 8) != load_u32(header + 8)) {
        state->problem = "length CRC mismatch";
        return 0;
    }
    uint64_t length = load_u64(header);
    if (left < FRAME_BYTES || length > left - FRAME_BYTES) {
        state->needed = length > UINT64_MAX - FRAME_BYTES ? UINT64_MAX : length + FRAME_BYTES;
        return 0;
    }
    *payload = header + HEADER_BYTES;
    if (masked_crc32c(*payload, (size_t)length) != load_u32(*payload + length)) {
        state->problem = "data CRC mismatch";
        return 0;
    }
    *length_out = (size_t)length;
    state->pos += FRAME_BYTES + (size_t)length;
    return 1;
}

static int check_start(Py_buffer *view, Py_ssize_t start, Py_ssize_t max_records) {
    if (start < 0 || start > view->len || max_records < 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "start must be within the buffer, max_records >= 0");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(split_records_doc,
"split_records(buffer, start, max_records) -> (records, end, needed, problem)\n\n"
"Reads whole records from buffer[start:], at most max_records of them.\n"
"records: list of the records' data as bytes; end: offset after the last\n"
"one. needed: 0 when max_records were read, else the size of the record at\n"
"`end` with its framing (HEADER_BYTES=12 while its header is incomplete),\n"
"which the buffer does not hold whole. problem: None, or why the record at\n"
"`end` is corrupt ('length CRC mismatch', 'data CRC mismatch').");

static PyObject *split_records(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, max_records;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &start, &max_records)) return NULL;
    if (check_start(&view, start, max_records) < 0) return NULL;
    PyObject *records = PyList_New(0);
    if (records == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    frame_state state = {(size_t)start, 0, NULL};
    const unsigned char *payload;
    size_t length;
    for (Py_ssize_t count = 0; count < max_records; count++) {
        if (!next_record(view.buf, (size_t)view.len, &state, &payload, &length)) break;
        PyObject *record = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)length);
        if (record == NULL || PyList_Append(records, record) < 0) {
            Py_XDECREF(record);
            Py_DECREF(records);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(record);
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(NnKz)", records, (Py_ssize_t)state.pos, (unsigned long long)state.needed,
                         state.problem);
}

PyDoc_STRVAR(frame_records_doc,
"frame_records(buffer, start, max_records) -> (count, end, needed, problem)\n\n"
"split_records without making the records: how many whole, CRC-checked\n"
"records buffer[start:end] holds (at most max_records). For decode_examples.\n"
"Releases the GIL.");

static PyObject *frame_records(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, max_records, count = 0;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &start, &max_records)) return NULL;
    if (check_start(&view, start, max_records) < 0) return NULL;
    frame_state state = {(size_t)start, 0, NULL};
    const unsigned char *payload;
    size_t length;
    Py_BEGIN_ALLOW_THREADS
    while (count < max_records && next_record(view.buf, (size_t)view.len, &state, &payload, &length)) count++;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnKz)", count, (Py_ssize_t)state.pos, (unsigned long long)state.needed, state.problem);
}

PyDoc_STRVAR(masked_crc_doc, "masked_crc32c(data) -> int: TFRecord's masked CRC-32C of data.");

static PyObject *masked_crc(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    uint32_t c = masked_crc32c(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

/* ---- Buffer: memory from the decoder, handed to pyarrow without a copy ------- */

typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t size;
} BufferObject;

static void buffer_dealloc(BufferObject *self) {
    free(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int buffer_getbuffer(BufferObject *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, self->data, self->size, 1, flags);
}

static PyBufferProcs buffer_as_buffer = {(getbufferproc)buffer_getbuffer, NULL};

static PyTypeObject BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pipeline._tfrecord.Buffer",
    .tp_basicsize = sizeof(BufferObject),
    .tp_dealloc = (destructor)buffer_dealloc,
    .tp_as_buffer = &buffer_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Read-only bytes made by decode_examples (the buffer protocol, e.g. pyarrow.py_buffer).",
};

/* A Buffer that takes over b's memory. */
static PyObject *take_buffer(ex_buffer *b) {
    if (b->data == NULL && (b->data = malloc(1)) == NULL) return PyErr_NoMemory(); /* pyarrow wants an address */
    BufferObject *self = PyObject_New(BufferObject, &BufferType);
    if (self == NULL) return NULL;
    self->data = b->data;
    self->size = (Py_ssize_t)b->size;
    b->data = NULL;
    b->size = b->capacity = 0;
    return (PyObject *)self;
}

/* ---- decode_examples ------------------------------------------------------------ */

PyDoc_STRVAR(decode_examples_doc,
"decode_examples(segments, features) -> (count, columns, malformed)\n\n"
"Decodes chosen features of tf.train.Examples into Arrow buffers.\n"
"segments: sequence of (buffer, start, count): `count` whole records at\n"
"buffer[start:] (as frame_records found them). features: sequence of\n"
"(name, kind), kind 'float', 'int' or 'bytes'.\n"
"count: records decoded; columns: per feature (validity, null_count,\n"
"offsets, values, data, mismatched_rows) for a large_list<float32 | int64 |\n"
"large_binary> of `count` rows: validity bitmap, int64 list offsets,\n"
"values (float32 / int64; for bytes int64 offsets into data), data (bytes\n"
"only, else None), Buffer objects; mismatched_rows: rows where the feature\n"
"has another kind (null here). A record that is not a tf.train.Example\n"
"ends the decoding: malformed is then (its index, byte in it, reason), and\n"
"the columns hold the records before it; else None. Releases the GIL.");

static const char *const KIND_NAMES[] = {NULL, "bytes", "float", "int"};

static PyObject *decode_examples(PyObject *self, PyObject *args) {
    PyObject *segments_arg, *features_arg;
    if (!PyArg_ParseTuple(args, "OO", &segments_arg, &features_arg)) return NULL;
    PyObject *segments = PySequence_Fast(segments_arg, "segments must be a sequence");
    PyObject *features = segments ? PySequence_Fast(features_arg, "features must be a sequence") : NULL;
    Py_ssize_t nseg = segments ? PySequence_Fast_GET_SIZE(segments) : 0;
    Py_ssize_t ncol = features ? PySequence_Fast_GET_SIZE(features) : 0;
    Py_buffer *views = segments ? PyMem_Calloc(nseg + 1, sizeof(Py_buffer)) : NULL;
    Py_ssize_t *starts = PyMem_Calloc(nseg + 1, sizeof(Py_ssize_t) * 2);
    ex_column *columns = PyMem_Calloc(ncol + 1, sizeof(ex_column));
    Py_ssize_t nviews = 0, decoded = 0, ready = 0;
    PyObject *result = NULL;
    if (features == NULL || views == NULL || starts == NULL || columns == NULL) {
        if (features) PyErr_NoMemory();
        goto done;
    }
    if (ncol > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many features");
        goto done;
    }
    for (Py_ssize_t i = 0; i < ncol; i++) {
        const char *name, *kind;
        Py_ssize_t name_size;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(features, i), "s#s", &name, &name_size, &kind)) goto done;
        ex_column *c = &columns[i];
        c->name = name;
        c->name_size = (size_t)name_size;
        for (int k = EX_BYTES; k <= EX_INT64; k++)
            if (strcmp(kind, KIND_NAMES[k]) == 0) c->kind = k;
        if (c->kind == 0) {
            PyErr_Format(PyExc_ValueError, "feature %R: kind must be 'float', 'int' or 'bytes', not %R",
                         PyTuple_GET_ITEM(PySequence_Fast_GET_ITEM(features, i), 0),
                         PyTuple_GET_ITEM(PySequence_Fast_GET_ITEM(features, i), 1));
            goto done;
        }
        if (ex_column_init(c) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        ready = i + 1;
    }
    for (; nviews < nseg; nviews++) {
        Py_ssize_t *s = &starts[2 * nviews];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(segments, nviews), "y*nn", &views[nviews], &s[0], &s[1]))
            goto done;
        if (s[0] < 0 || s[0] > views[nviews].len || s[1] < 0) {
            PyBuffer_Release(&views[nviews]);
            PyErr_SetString(PyExc_ValueError, "segment start must be within its buffer, count >= 0");
            goto done;
        }
    }

    int status = EX_OK;
    const char *reason = NULL;
    size_t where = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nseg && status == EX_OK; i++) {
        const unsigned char *data = views[i].buf;
        size_t size = (size_t)views[i].len, pos = (size_t)starts[2 * i];
        for (Py_ssize_t k = 0; k < starts[2 * i + 1]; k++) {
            /* Framed before: only the lengths are read (and bounds checked). */
            if (size - pos < FRAME_BYTES || load_u64(data + pos) > size - pos - FRAME_BYTES) {
                status = -1;
                break;
            }
            size_t length = (size_t)load_u64(data + pos);
            status = ex_decode(columns, (int)ncol, data + pos + HEADER_BYTES, length, &reason, &where);
            if (status != EX_OK) break;
            decoded++;
            pos += FRAME_BYTES + length;
        }
    }
    Py_END_ALLOW_THREADS
    if (status == EX_NO_MEMORY) {
        PyErr_NoMemory();
        goto done;
    }
    if (status == -1) {
        PyErr_SetString(PyExc_ValueError, "a segment does not hold the whole records it counts");
        goto done;
    }
    PyObject *list = PyList_New(ncol);
    if (list == NULL) goto done;
    for (Py_ssize_t i = 0; i < ncol; i++) {
        ex_column *c = &columns[i];
        PyObject *item = Py_BuildValue(
            "(NLNNNL)", take_buffer(&c->validity), (long long)c->null_count, take_buffer(&c->offsets),
            take_buffer(&c->values), c->kind == EX_BYTES ? take_buffer(&c->data) : Py_NewRef(Py_None),
            (long long)c->mismatched_rows);
        if (item == NULL) {
            Py_DECREF(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, item);
    }
    if (status == EX_MALFORMED)
        result = Py_BuildValue("(nN(nns))", decoded, list, decoded, (Py_ssize_t)where, reason);
    else
        result = Py_BuildValue("(nNO)", decoded, list, Py_None);

done:
    for (Py_ssize_t i = 0; i < nviews; i++) PyBuffer_Release(&views[i]);
    for (Py_ssize_t i = 0; i < ready; i++) ex_column_free(&columns[i]);
    PyMem_Free(views);
    PyMem_Free(starts);
    PyMem_Free(columns);
    Py_XDECREF(features);
    Py_XDECREF(segments);
    return result;
}

PyDoc_STRVAR(example_features_doc,
"example_features(record) -> list of (name, kind)\n\n"
"The features of one serialized tf.train.Example, in the order of its map\n"
"entries (a later one of the same name replaces an earlier one): name (str)\n"
"and kind ('float', 'int', 'bytes', or None for a Feature with no kind).\n"
"ValueError(reason, byte) if the record is not a tf.train.Example.");

static PyObject *example_features(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    ex_buffer entries = {NULL, 0, 0};
    const char *reason = NULL;
    size_t where = 0;
    const unsigned char *record = view.buf;
    int status = ex_entries(record, (size_t)view.len, &entries, &reason, &where);
    PyObject *result = NULL;
    if (status == EX_NO_MEMORY) {
        PyErr_NoMemory();
    } else if (status == EX_MALFORMED) {
        PyObject *details = Py_BuildValue("(sn)", reason, (Py_ssize_t)where);
        if (details) PyErr_SetObject(PyExc_ValueError, details);
        Py_XDECREF(details);
    } else {
        size_t count = entries.size / sizeof(ex_entry);
        result = PyList_New((Py_ssize_t)count);
        for (size_t i = 0; result && i < count; i++) {
            ex_entry *e = (ex_entry *)entries.data + i;
            PyObject *item = Py_BuildValue("(s#z)", (const char *)record + e->key_offset, (Py_ssize_t)e->key_size,
                                           KIND_NAMES[e->kind]);
            if (item == NULL) Py_CLEAR(result);
            else PyList_SET_ITEM(result, (Py_ssize_t)i, item);
        }
    }
    free(entries.data);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"example_features", example_features, METH_VARARGS, example_features_doc},
    {"split_records", split_records, METH_VARARGS, split_records_doc},
    {"frame_records", frame_records, METH_VARARGS, frame_records_doc},
    {"decode_examples", decode_examples, METH_VARARGS, decode_examples_doc},
    {"masked_crc32c", masked_crc, METH_VARARGS, masked_crc_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tfrecord", "TFRecord framing and tf.train.Example decoding (see pipeline/tfrecord.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__tfrecord(void) {
    init_crc_table();
#ifdef HAVE_SSE42_CRC
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) crc32c = crc32c_sse42;
#endif
    if (PyType_Ready(&BufferType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "HEADER_BYTES", HEADER_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_BYTES", FRAME_BYTES) < 0 ||
        PyModule_AddStringConstant(m, "CRC32C", crc32c == crc32c_table ? "table" : "sse4.2") < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
