/* ShotStream frame ring: reference C reader (layout version 1, see service/ring.py).
 *
 *   ring_reader PATH SLOT SEQUENCE [LENGTH]
 *       Read chunk SEQUENCE from slot SLOT. Prints "ok <fnv1a64 hex> <length>" and exits 0,
 *       or prints "stale ..." and exits 3 when the slot no longer holds that chunk.
 *   ring_reader PATH -
 *       Follow mode: one "SLOT SEQUENCE" pair per stdin line, one "ok <hash> <length>" or
 *       "stale ..." line per request on stdout (flushed); exits 0 at end of input.
 *       "SLOT SEQUENCE pause" (test hook): after copying, print "copied" and wait for one more
 *       stdin line before the final seq_begin check, so a test can interleave a writer.
 *   Exit 2: usage or not a ring file; 1: I/O error.
 *
 * Build: gcc -O2 -std=c11 -o ring_reader ring_reader.c
 *
 * Seqlock rules (reader side): load seq_end (acquire) first, then seq_begin, copy the metadata and
 * pixels into a private buffer, acquire fence, load seq_begin again. Accept the copy only if
 * seq_end == 2*s+2 and both seq_begin loads == 2*s+1. Hash/use the private copy, never the mapping.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "this reader assumes a little-endian host (the ring is little-endian)"
#endif

#define RING_MAGIC "SSRING01"
#define RING_LAYOUT_VERSION 1u

typedef struct {
    const unsigned char *base;
    size_t size;
    uint32_t header_bytes, slot_count, slot_header_bytes;
    uint64_t slot_bytes;
    unsigned char *buf; /* private copy, slot capacity bytes */
} ring_t;

static uint32_t rd_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* One aligned 8-byte atomic load from the shared mapping. */
static uint64_t load_seq(const unsigned char *p, memory_order order) {
    return atomic_load_explicit((const _Atomic uint64_t *)(const void *)p, order);
}

static uint64_t fnv1a64(const unsigned char *p, uint64_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ull; }
    return h;
}

static int ring_open(ring_t *r, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { fprintf(stderr, "open %s: %s\n", path, strerror(errno)); return 1; }
    struct stat st;
    if (fstat(fd, &st) != 0) { fprintf(stderr, "fstat: %s\n", strerror(errno)); close(fd); return 1; }
    if (st.st_size < 128) { fprintf(stderr, "%s: too small for a ring\n", path); close(fd); return 2; }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd); /* the mapping stays valid */
    if (m == MAP_FAILED) { fprintf(stderr, "mmap: %s\n", strerror(errno)); return 1; }
    r->base = m;
    r->size = (size_t)st.st_size;
    if (memcmp(r->base, RING_MAGIC, 8) != 0 || rd_u32(r->base + 8) != RING_LAYOUT_VERSION) {
        fprintf(stderr, "%s: not a ring file of layout %u\n", path, RING_LAYOUT_VERSION);
        return 2;
    }
    r->header_bytes = rd_u32(r->base + 12);
    r->slot_count = rd_u32(r->base + 16);
    r->slot_header_bytes = rd_u32(r->base + 20);
    r->slot_bytes = rd_u64(r->base + 24);
    if (r->header_bytes % 64 || r->slot_header_bytes % 64 || r->slot_bytes % 64 ||
        r->slot_bytes <= r->slot_header_bytes ||
        (uint64_t)r->header_bytes + (uint64_t)r->slot_count * r->slot_bytes > (uint64_t)r->size) {
        fprintf(stderr, "%s: inconsistent ring header\n", path);
        return 2;
    }
    r->buf = malloc(r->slot_bytes - r->slot_header_bytes + 1);
    if (!r->buf) { fprintf(stderr, "out of memory\n"); return 1; }
    return 0;
}

/* 0: ok (*len, *hash set); 3: stale; 2: bad request. */
static int ring_read(ring_t *r, uint64_t slot, uint64_t seq, uint64_t *len, uint64_t *hash, int pause) {
    if (slot >= r->slot_count || seq > (UINT64_MAX - 2) / 2) return 2;
    const unsigned char *s = r->base + r->header_bytes + slot * r->slot_bytes;
    const uint64_t want_begin = 2 * seq + 1, want_end = 2 * seq + 2;

    uint64_t end = load_seq(s + 8, memory_order_acquire);       /* R1: seq_end first */
    uint64_t begin = load_seq(s + 0, memory_order_relaxed);     /* R2: early exit */
    if (end != want_end || begin != want_begin) {
        printf("stale slot=%" PRIu64 " want=%" PRIu64 " begin=%" PRIu64 " end=%" PRIu64 "\n", slot, seq, begin, end);
        return 3;
    }
    /* R3: metadata and pixels into the private buffer */
    uint64_t chunk_seq = rd_u64(s + 16);
    uint64_t n = rd_u64(s + 40); /* payload_length */
    uint64_t cap = r->slot_bytes - r->slot_header_bytes;
    uint64_t ncopy = n <= cap ? n : cap;
    memcpy(r->buf, s + r->slot_header_bytes, (size_t)ncopy);
    if (pause) { /* test hook only */
        char tmp[64];
        printf("copied\n");
        fflush(stdout);
        if (!fgets(tmp, sizeof tmp, stdin)) return 2;
    }
    atomic_thread_fence(memory_order_acquire);                  /* R4 */
    begin = load_seq(s + 0, memory_order_relaxed);              /* R5: seq_begin last */
    if (begin != want_begin) {
        printf("stale slot=%" PRIu64 " want=%" PRIu64 " begin=%" PRIu64 " end=%" PRIu64
               " (overwritten while copying)\n", slot, seq, begin, end);
        return 3;
    }
    if (chunk_seq != seq || n > cap) {                          /* R6 */
        fprintf(stderr, "slot header does not match (chunk %" PRIu64 ", %" PRIu64 " bytes)\n", chunk_seq, n);
        return 2;
    }
    *len = n;
    *hash = fnv1a64(r->buf, n);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PATH SLOT SEQUENCE [LENGTH] | %s PATH -\n", argv[0], argv[0]);
        return 2;
    }
    ring_t r;
    memset(&r, 0, sizeof r);
    int rc = ring_open(&r, argv[1]);
    if (rc) return rc;

    if (strcmp(argv[2], "-") == 0) {
        char line[256];
        while (fgets(line, sizeof line, stdin)) {
            unsigned long long slot, seq;
            char word[16] = "";
            int nf = sscanf(line, "%llu %llu %15s", &slot, &seq, word);
            if (nf < 2) { printf("bad request\n"); fflush(stdout); continue; }
            uint64_t len = 0, hash = 0;
            int k = ring_read(&r, slot, seq, &len, &hash, nf == 3 && strcmp(word, "pause") == 0);
            if (k == 0) printf("ok %016" PRIx64 " %" PRIu64 "\n", hash, len);
            else if (k == 2) printf("bad request\n");
            else if (k != 3) printf("error\n");
            fflush(stdout);
        }
        return 0;
    }
    if (argc < 4) { fprintf(stderr, "usage: %s PATH SLOT SEQUENCE [LENGTH]\n", argv[0]); return 2; }
    char *e1, *e2;
    unsigned long long slot = strtoull(argv[2], &e1, 10), seq = strtoull(argv[3], &e2, 10);
    if (*e1 || *e2) { fprintf(stderr, "bad SLOT or SEQUENCE\n"); return 2; }
    uint64_t len = 0, hash = 0;
    rc = ring_read(&r, slot, seq, &len, &hash, 0);
    if (rc == 0) {
        if (argc > 4 && strtoull(argv[4], NULL, 10) != len) {
            fprintf(stderr, "length %" PRIu64 " != expected %s\n", len, argv[4]);
            return 2;
        }
        printf("ok %016" PRIx64 " %" PRIu64 "\n", hash, len);
    }
    return rc;
}
