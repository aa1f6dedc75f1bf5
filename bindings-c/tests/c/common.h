/* Helpers shared by the C test programs: checks, a tiny protobuf encoder, file helpers. */
#ifndef WSD_TEST_COMMON_H
#define WSD_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsd.h"

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      const char *detail = wsd_last_error_message();                               \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,      \
              __LINE__, #cond, detail ? detail : "none");                          \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

#define CHECK_STATUS(expr, want)                                                   \
  do {                                                                             \
    wsd_status got_ = (expr);                                                      \
    if (got_ != (want)) {                                                          \
      const char *detail = wsd_last_error_message();                               \
      fprintf(stderr, "%s:%d: %s: got %s, want %s (last error: %s)\n", __FILE__,   \
              __LINE__, #expr, wsd_status_str((int)got_), wsd_status_str((int)(want)), \
              detail ? detail : "none");                                           \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

/* A growable protobuf buffer with just what the tests need: strings, bools, sub-messages. */
typedef struct {
  unsigned char data[4096];
  size_t len;
} pb;

static inline void pb_varint(pb *b, unsigned long long v) {
  while (v >= 0x80) {
    b->data[b->len++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  b->data[b->len++] = (unsigned char)v;
}

static inline void pb_bytes(pb *b, int field, const void *data, size_t len) {
  pb_varint(b, ((unsigned long long)field << 3) | 2);
  pb_varint(b, len);
  memcpy(b->data + b->len, data, len);
  b->len += len;
}

static inline void pb_string(pb *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

static inline void pb_message(pb *b, int field, const pb *sub) { pb_bytes(b, field, sub->data, sub->len); }

static inline char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  return buf;
}

static inline void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  CHECK(fputs(text, f) >= 0);
  CHECK(fclose(f) == 0);
}

#endif
