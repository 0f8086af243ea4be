/* TFRecord framing without TensorFlow.
 *
 * A TFRecord file is a sequence of records, each
 *     uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)
 * (little-endian). Finding the records is a walk from one header to the
 * next, so it cannot be vectorised in numpy; this is that walk, in C, with
 * both CRCs checked as TensorFlow's record reader checks them. Importing
 * TensorFlow to read the framing costs 3-6 s per process; this module
 * imports in microseconds. Decoding the tf.train.Examples is left to
 * tfx-bsl. pipeline/tfrecord.py drives it over a file in chunks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define HEADER_BYTES 12 /* length + its CRC */
#define FRAME_BYTES 16  /* header + the data's CRC */

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing by 8. */
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

static uint32_t crc32c(const unsigned char *p, size_t n) {
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

/* TFRecord stores CRCs masked (rotated and offset), as leveldb does. */
static uint32_t masked_crc32c(const unsigned char *p, size_t n) {
    uint32_t c = crc32c(p, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
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
    const unsigned char *data = view.buf;
    size_t size = (size_t)view.len, pos = (size_t)start;
    if (start < 0 || pos > size || max_records < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "start must be within the buffer, max_records >= 0");
        return NULL;
    }
    PyObject *records = PyList_New(0);
    if (records == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    uint64_t needed = 0;
    const char *problem = NULL;
    for (Py_ssize_t count = 0; count < max_records; count++) {
        size_t left = size - pos;
        if (left < HEADER_BYTES) {
            needed = HEADER_BYTES;
            break;
        }
        const unsigned char *header = data + pos;
        if (masked_crc32c(header, 8) != load_u32(header + 8)) {
            problem = "length CRC mismatch";
            break;
        }
        uint64_t length = load_u64(header);
        if (left < FRAME_BYTES || length > left - FRAME_BYTES) {
            needed = length > UINT64_MAX - FRAME_BYTES ? UINT64_MAX : length + FRAME_BYTES;
            break;
        }
        const unsigned char *payload = header + HEADER_BYTES;
        if (masked_crc32c(payload, (size_t)length) != load_u32(payload + length)) {
            problem = "data CRC mismatch";
            break;
        }
        PyObject *record = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)length);
        if (record == NULL || PyList_Append(records, record) < 0) {
            Py_XDECREF(record);
            Py_DECREF(records);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(record);
        pos += FRAME_BYTES + (size_t)length;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(NnKz)", records, (Py_ssize_t)pos, (unsigned long long)needed, problem);
}

PyDoc_STRVAR(masked_crc_doc, "masked_crc32c(data) -> int: TFRecord's masked CRC-32C of data.");

static PyObject *masked_crc(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    uint32_t c = masked_crc32c(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyMethodDef methods[] = {
    {"split_records", split_records, METH_VARARGS, split_records_doc},
    {"masked_crc32c", masked_crc, METH_VARARGS, masked_crc_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tfrecord", "TFRecord framing (see pipeline/tfrecord.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__tfrecord(void) {
    init_crc_table();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "HEADER_BYTES", HEADER_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_BYTES", FRAME_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
