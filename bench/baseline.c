/*
 * baseline.c - the C reference for `make bench`: the same job every contender does.
 *
 * Reads a capture with libpcap, parses Ethernet (skipping one 802.1Q/802.1ad tag), IPv4
 * and TCP/UDP, and aggregates packets and bytes (wire length) per direction per
 * bidirectional 5-tuple in an open-addressing hash table (linear probing, grows at 50 %
 * load). The direction "fwd" is the one of the flow's first packet.
 *
 *   cc -O2 bench/baseline.c -lpcap -o bench/baseline
 *   bench/baseline FILE.pcap
 *
 * Prints one JSON line: packets, bytes, ipv4_l4 (packets that were IPv4 TCP/UDP), flows,
 * the flow-table totals (fwd/rev packets and bytes, to cross-check other contenders),
 * elapsed_s (open to end, monotonic clock) and packets_per_s.
 */
#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint32_t ip_a, ip_b;     /* canonical order: (ip_a, port_a) <= (ip_b, port_b) */
    uint16_t port_a, port_b;
    uint8_t proto;
    uint8_t used;
    uint8_t first_from_a;    /* the flow's first packet went a -> b */
    uint8_t pad;
    uint64_t pkts[2];        /* [0] fwd (first packet's direction), [1] rev */
    uint64_t bytes[2];
} flow_t;

static flow_t *table;
static size_t cap, mask, nflows;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t key_hash(uint32_t ia, uint32_t ib, uint16_t pa, uint16_t pb, uint8_t proto) {
    uint64_t k1 = ((uint64_t)ia << 32) | ib;
    uint64_t k2 = ((uint64_t)pa << 32) | ((uint64_t)pb << 16) | proto;
    return mix64(k1 ^ mix64(k2 + 0x9e3779b97f4a7c15ULL));
}

static void grow(void) {
    size_t ncap = cap ? cap * 2 : (1u << 16);
    flow_t *nt = calloc(ncap, sizeof(flow_t));
    if (!nt) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    size_t nmask = ncap - 1;
    for (size_t i = 0; i < cap; i++) {
        flow_t *f = &table[i];
        if (!f->used) continue;
        size_t h = key_hash(f->ip_a, f->ip_b, f->port_a, f->port_b, f->proto) & nmask;
        while (nt[h].used) h = (h + 1) & nmask;
        nt[h] = *f;
    }
    free(table);
    table = nt;
    cap = ncap;
    mask = nmask;
}

static inline void account(uint32_t src, uint32_t dst, uint16_t sp, uint16_t dp, uint8_t proto, uint32_t len) {
    int from_a = (src < dst) || (src == dst && sp <= dp);
    uint32_t ia = from_a ? src : dst, ib = from_a ? dst : src;
    uint16_t pa = from_a ? sp : dp, pb = from_a ? dp : sp;
    size_t h = key_hash(ia, ib, pa, pb, proto) & mask;
    for (;;) {
        flow_t *f = &table[h];
        if (!f->used) {
            f->used = 1;
            f->ip_a = ia;
            f->ip_b = ib;
            f->port_a = pa;
            f->port_b = pb;
            f->proto = proto;
            f->first_from_a = (uint8_t)from_a;
            f->pkts[0] = 1;
            f->bytes[0] = len;
            if (++nflows * 2 > cap) grow();
            return;
        }
        if (f->ip_a == ia && f->ip_b == ib && f->port_a == pa && f->port_b == pb && f->proto == proto) {
            int d = (from_a == f->first_from_a) ? 0 : 1;
            f->pkts[d]++;
            f->bytes[d] += len;
            return;
        }
        h = (h + 1) & mask;
    }
}

static inline uint16_t be16(const u_char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const u_char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE.pcap\n", argv[0]);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline(argv[1], err);
    if (!p) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (pcap_datalink(p) != DLT_EN10MB) {
        fprintf(stderr, "not an Ethernet capture\n");
        return 1;
    }
    grow();
    uint64_t packets = 0, bytes = 0, l4 = 0;
    struct pcap_pkthdr *hdr;
    const u_char *d;
    int rc;
    while ((rc = pcap_next_ex(p, &hdr, &d)) == 1) {
        packets++;
        bytes += hdr->len;
        uint32_t n = hdr->caplen;
        if (n < 14) continue;
        uint32_t off = 12;
        uint16_t et = be16(d + off);
        if (et == 0x8100 || et == 0x88a8) {
            if (n < 18) continue;
            off += 4;
            et = be16(d + off);
        }
        off += 2;
        if (et != 0x0800 || n < off + 20) continue;
        const u_char *ip = d + off;
        if ((ip[0] >> 4) != 4) continue;
        uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
        uint8_t proto = ip[9];
        if (ihl < 20 || (proto != 6 && proto != 17)) continue;
        if (be16(ip + 6) & 0x1fff) continue; /* non-first fragment: no ports */
        if (n < off + ihl + 4) continue;
        const u_char *l4h = ip + ihl;
        l4++;
        account(be32(ip + 12), be32(ip + 16), be16(l4h), be16(l4h + 2), proto, hdr->len);
    }
    if (rc == PCAP_ERROR) fprintf(stderr, "%s\n", pcap_geterr(p));
    pcap_close(p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    uint64_t tot[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < cap; i++) {
        if (!table[i].used) continue;
        tot[0] += table[i].pkts[0];
        tot[1] += table[i].pkts[1];
        tot[2] += table[i].bytes[0];
        tot[3] += table[i].bytes[1];
    }
    printf("{\"tool\": \"c-baseline\", \"packets\": %llu, \"bytes\": %llu, \"ipv4_l4\": %llu, \"flows\": %zu, "
           "\"pkts_fwd\": %llu, \"pkts_rev\": %llu, \"bytes_fwd\": %llu, \"bytes_rev\": %llu, "
           "\"elapsed_s\": %.6f, \"packets_per_s\": %.1f}\n",
           (unsigned long long)packets, (unsigned long long)bytes, (unsigned long long)l4, nflows,
           (unsigned long long)tot[0], (unsigned long long)tot[1], (unsigned long long)tot[2],
           (unsigned long long)tot[3], el, el > 0 ? (double)packets / el : 0.0);
    free(table);
    return rc == PCAP_ERROR ? 1 : 0;
}
