/*
 * Unit tests of the shared DNS table (gateway/mg_dns.c, included so that
 * its internals can be poked): entries given per host name across
 * generations, round robin over a name's addresses, pooled connections
 * that stop being valid when the answer moves, a writer killed half way,
 * and readers that never see a torn list while another process publishes
 * as fast as it can.
 */
#include "../../gateway/mg_dns.c"

#include <netinet/in.h>
#include <sys/wait.h>

#include "mg_conf.h"
#include "tap.h"

#define WRITER_LISTS 500000
#define MAX_READS    4000000

static char tmpdir[64];

static mg_snapshot_t *
load(const char *name, const char *text)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    char path[128];
    unsigned i;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s.conf", tmpdir, name);
    f = fopen(path, "w");
    if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
    snap = mg_conf_load(path, &errs);
    for (i = 0; i < errs.n; i++) {
        printf("# %s\n", errs.msgs[i]);
    }
    mg_conf_errors_free(&errs);
    if (snap == NULL) {
        printf("Bail out! %s does not load\n", path);
        exit(2);
    }
    return snap;
}

#define HEAD                                                                 \
    "regions = ( { name = \"b\"; front_proxy = \"gw.b.test:8443\"; } );\n"   \
    "listeners = ( { name = \"l\"; listen = \"127.0.0.1:8000\";\n"           \
    "                routes = \"t\"; } );\n"                                 \
    "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"                \
    "                   cluster = \"c\"; } ); };\n"

static mg_dns_ip_t
ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
    mg_dns_ip_t ip;

    memset(&ip, 0, sizeof(ip));
    ip.family = AF_INET;
    ip.addr[0] = a;
    ip.addr[1] = b;
    ip.addr[2] = c;
    ip.addr[3] = d;
    return ip;
}

static mg_dns_ip_t
ip6_loopback(void)
{
    mg_dns_ip_t ip;

    memset(&ip, 0, sizeof(ip));
    ip.family = AF_INET6;
    ip.addr[15] = 1;
    return ip;
}

static const mg_endpoint_conf_t *
endpoint(const mg_snapshot_t *snap, unsigned c, unsigned p, unsigned j)
{
    return &snap->clusters[c].priorities[p].endpoints[j];
}

static void
test_no_table(void)
{
    mg_snapshot_t *snap = load("none", HEAD
        "clusters = ( { name = \"c\"; endpoints = (\n"
        "  { address = \"a.test:80\"; }, { address = \"127.0.0.1:81\"; } ); } );\n");
    const struct sockaddr_in *sin;
    mg_dns_peer_t peer;

    is_int(mg_dns_addr(endpoint(snap, 0, 0, 0), &peer), MG_AGAIN,
           "without the table a host name has no address");
    is_int(mg_dns_addr(endpoint(snap, 0, 0, 1), &peer), MG_OK,
           "a literal address needs no table");
    sin = (const struct sockaddr_in *)&peer.addr;
    ok(sin->sin_family == AF_INET && ntohs(sin->sin_port) == 81
       && peer.addrlen == sizeof(*sin) && peer.text[0] == '\0',
       "it is the configured address, with no text for logs");
    ok(mg_dns_peer_valid(endpoint(snap, 0, 0, 1), &peer),
       "a literal address stays valid");
    is_int(mg_dns_read(0, NULL), 0, "nothing to read without the table");
    mg_snapshot_free(snap);
}

static void
test_assign(void)
{
    mg_snapshot_t *snap, *snap2;
    const mg_endpoint_conf_t *a, *a2, *b, *lit, *fp;
    const struct sockaddr_in *sin;
    const struct sockaddr_in6 *sin6;
    mg_dns_ip_t ips[2], got[MG_DNS_ADDRS];
    mg_dns_peer_t peer, p1, p2;
    char buf[MG_DNS_LOG_NAME_LEN];
    unsigned slot_a, i, n4 = 0, n6 = 0;

    snap = load("one", HEAD
        "clusters = ( { name = \"c\"; out_of_zone = [ \"b\" ]; endpoints = (\n"
        "    { address = \"a.test:8080\"; }, { address = \"b.test:80\"; },\n"
        "    { address = \"127.0.0.1:81\"; } ); },\n"
        "  { name = \"d\"; endpoints = ( { address = \"A.TEST:9090\"; } ); } );\n");
    ok(mg_dns_table_create() == MG_OK && mg_dns_table != NULL,
       "the table maps");
    is_int(mg_dns_assign(snap, 1, 1), MG_OK, "generation 1 gets entries");
    a = endpoint(snap, 0, 0, 0);
    b = endpoint(snap, 0, 0, 1);
    lit = endpoint(snap, 0, 0, 2);
    fp = endpoint(snap, 0, 1, 0);
    a2 = endpoint(snap, 1, 0, 0);
    ok(a->dns_slot < MG_DNS_SLOTS && a->dns_slot == a2->dns_slot,
       "one entry per name, whatever its case or port");
    ok(b->dns_slot < MG_DNS_SLOTS && b->dns_slot != a->dns_slot
       && fp->dns_slot < MG_DNS_SLOTS && fp->dns_slot != a->dns_slot
       && fp->dns_slot != b->dns_slot, "other names, other entries");
    is_int(lit->dns_slot, MG_DNS_NO_SLOT, "a literal address has none");
    is_int(mg_dns_count(snap), 3, "three names to resolve (the front "
           "proxy's included)");
    slot_a = a->dns_slot;

    is_int(mg_dns_addr(a, &peer), MG_AGAIN, "no address before an answer");
    ok(mg_dns_pending(a) && !mg_dns_pending(lit),
       "the name waits for its first lookup; a literal address never does");
    atomic_store(&mg_dns_table->slots[b->dns_slot].failing, 1);
    ok(!mg_dns_pending(b), "a failed lookup ends the wait, without address");
    ok(strcmp(mg_dns_log_name(a, &peer, buf, sizeof(buf)), "a.test:8080")
       == 0, "the log names the endpoint alone while it has no address");

    ips[0] = ip4(127, 0, 0, 2);
    ips[1] = ip6_loopback();
    is_int(mg_dns_publish(slot_a, ips, 2), MG_OK, "an answer is published");
    ok(!mg_dns_pending(a), "which ends the wait");
    is_int(mg_dns_read(slot_a, got), 2, "it reads back");
    ok(memcmp(got, ips, sizeof(ips)) == 0, "with its addresses");
    for (i = 0; i < 10; i++) {
        if (mg_dns_addr(a, &peer) != MG_OK) {
            break;
        }
        sin = (const struct sockaddr_in *)&peer.addr;
        sin6 = (const struct sockaddr_in6 *)&peer.addr;
        if (sin->sin_family == AF_INET && ntohs(sin->sin_port) == 8080
            && sin->sin_addr.s_addr == htonl(0x7f000002)
            && strcmp(peer.text, "127.0.0.2:8080") == 0) {
            n4++;
        } else if (sin6->sin6_family == AF_INET6
                   && ntohs(sin6->sin6_port) == 8080
                   && IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)
                   && strcmp(peer.text, "[::1]:8080") == 0) {
            n6++;
        }
    }
    ok(n4 == 5 && n6 == 5, "connections take the addresses in turn, with "
       "the endpoint's port (%u IPv4, %u IPv6)", n4, n6);
    is_int(mg_dns_addr(a2, &peer), MG_OK, "the same name on another port");
    ok(strstr(peer.text, ":9090") != NULL, "uses its own port (%s)",
       peer.text);
    ok(strcmp(mg_dns_log_name(a2, &peer, buf, sizeof(buf)),
              "A.TEST:9090 (127.0.0.2:9090)") == 0
           || strcmp(buf, "A.TEST:9090 ([::1]:9090)") == 0,
       "the log names the endpoint and the address (%s)", buf);
    is_int(mg_dns_addr(b, &peer), MG_AGAIN, "another name knows nothing yet");

    /* p1 goes to 127.0.0.2, p2 to ::1. */
    do {
        mg_dns_addr(a, &p1);
    } while (p1.addr.ss_family != AF_INET);
    do {
        mg_dns_addr(a, &p2);
    } while (p2.addr.ss_family != AF_INET6);
    ok(mg_dns_peer_valid(a, &p1) && mg_dns_peer_valid(a, &p2),
       "connections to the current addresses are valid");
    ips[0] = ip4(127, 0, 0, 3);
    ips[1] = ip6_loopback();
    mg_dns_publish(slot_a, ips, 2);
    ok(!mg_dns_peer_valid(a, &p1), "127.0.0.2 is gone from the answer");
    ok(mg_dns_peer_valid(a, &p2) && p2.version == p1.version + 1,
       "::1 is still in it, and its version moves on");
    is_int(mg_dns_publish(slot_a, ips, 0), MG_OK, "an empty list publishes");
    ok(mg_dns_peer_valid(a, &p1), "but takes nothing away from anyone");

    /* A reload: the same names keep their entries and answers. */
    mg_dns_publish(slot_a, ips, 2);
    snap2 = load("two", HEAD
        "clusters = ( { name = \"c\"; out_of_zone = [ \"b\" ];\n"
        "    endpoints = ( { address = \"new.test:80\"; },\n"
        "                  { address = \"a.Test:8080\"; } ); } );\n");
    mg_dns_assign(snap2, 2, 1);
    ok(endpoint(snap2, 0, 0, 1)->dns_slot == slot_a
       && mg_dns_read(slot_a, got) == 2,
       "a name of the next generation keeps its entry and its answer");
    ok(endpoint(snap2, 0, 1, 0)->dns_slot == fp->dns_slot,
       "so does the front proxy");
    /* Generation 1 gone: b.test's entry is free, and a new name that
     * takes it starts with no address. */
    mg_dns_publish(b->dns_slot, ips, 1);
    mg_snapshot_free(snap);
    snap = load("three", HEAD
        "clusters = ( { name = \"c\"; endpoints = (\n"
        "    { address = \"a.test:8080\"; }, { address = \"c.test:1\"; },\n"
        "    { address = \"d.test:1\"; } ); } );\n");
    mg_dns_assign(snap, 3, 3);
    ok(mg_dns_table->slots[endpoint(snap, 0, 0, 0)->dns_slot].name[0] != '\0'
       && endpoint(snap, 0, 0, 0)->dns_slot == slot_a,
       "a name in use stays");
    i = endpoint(snap, 0, 0, 1)->dns_slot;
    ok(mg_dns_read(i, got) == 0
       && mg_dns_read(endpoint(snap, 0, 0, 2)->dns_slot, got) == 0,
       "names reusing freed entries have no address (%u)", i);
    mg_snapshot_free(snap2);
    mg_snapshot_free(snap);
}

/* A control process killed in the middle of a publish leaves the entry
 * locked and its sequence odd: readers keep the last list, and the next
 * writer takes over. */
static void
test_dead_writer(void)
{
    dns_slot_t *s = &mg_dns_table->slots[MG_DNS_SLOTS - 1];
    mg_dns_ip_t ips[1], got[MG_DNS_ADDRS];
    pid_t pid;

    ips[0] = ip4(10, 0, 0, 1);
    mg_dns_publish(MG_DNS_SLOTS - 1, ips, 1);
    pid = fork();
    if (pid == 0) {
        /* Half a publish: locked, odd, part of the other copy. */
        dns_lock(s);
        atomic_fetch_add(&s->seq, 1);
        atomic_store(&s->lists[(atomic_load(&s->seq) / 2 + 1) % 2].n, 9);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    ok(atomic_load(&s->writer) == (uint32_t)pid && atomic_load(&s->seq) % 2,
       "the dead writer's hold is left behind");
    ok(mg_dns_read(MG_DNS_SLOTS - 1, got) == 1
       && memcmp(&got[0], &ips[0], sizeof(ips[0])) == 0,
       "readers still get the last list");
    ips[0] = ip4(10, 0, 0, 2);
    is_int(mg_dns_publish(MG_DNS_SLOTS - 1, ips, 1), MG_OK,
           "the next writer takes over");
    ok(mg_dns_read(MG_DNS_SLOTS - 1, got) == 1 && got[0].addr[3] == 2
       && atomic_load(&s->seq) % 2 == 0 && atomic_load(&s->writer) == 0,
       "and publishes a whole list");
    atomic_store(&s->writer, (uint32_t)getppid());
    is_int(mg_dns_publish(MG_DNS_SLOTS - 1, ips, 1), MG_AGAIN,
           "a live writer's hold is respected");
    atomic_store(&s->writer, 0);
}

/* List k holds 1 + k % 16 IPv6 addresses: bytes 0..3 are k, byte 4 the
 * length, byte 5 the index. Any mix of two lists shows. */
static void
fill(uint32_t k, mg_dns_ip_t *ips, unsigned *n)
{
    unsigned i;

    *n = 1 + k % MG_DNS_ADDRS;
    for (i = 0; i < *n; i++) {
        memset(&ips[i], 0, sizeof(ips[i]));
        ips[i].family = AF_INET6;
        memcpy(ips[i].addr, &k, 4);
        ips[i].addr[4] = (uint8_t)*n;
        ips[i].addr[5] = (uint8_t)i;
        ips[i].addr[15] = 1;
    }
}

static void
test_concurrent(void)
{
    mg_snapshot_t *snap = load("four", HEAD
        "clusters = ( { name = \"c\"; endpoints = (\n"
        "    { address = \"race.test:80\"; } ); } );\n");
    const mg_endpoint_conf_t *ep = endpoint(snap, 0, 0, 0);
    mg_dns_ip_t ips[MG_DNS_ADDRS], got[MG_DNS_ADDRS];
    const struct sockaddr_in6 *sin6;
    mg_dns_peer_t peer;
    unsigned long reads = 0, whole = 0, torn = 0, back = 0, again = 0;
    uint32_t k, last = 0;
    unsigned n, i, m;
    int status = -1, done = 0;
    pid_t pid;

    mg_dns_assign(snap, 4, 4);
    fill(0, ips, &n);
    mg_dns_publish(ep->dns_slot, ips, n);
    pid = fork();
    if (pid == 0) {
        for (k = 1; k <= WRITER_LISTS; k++) {
            fill(k, ips, &n);
            /* Nobody else writes: it never waits. */
            if (mg_dns_publish(ep->dns_slot, ips, n) != MG_OK) {
                _exit(1);
            }
        }
        _exit(0);
    }
    while (!done && reads < MAX_READS) {
        done = waitpid(pid, &status, WNOHANG) == pid;
        reads++;
        if (reads % 2) {
            m = mg_dns_read(ep->dns_slot, got);
            if (m == 0) {
                again++;
                continue;
            }
            whole++;
            memcpy(&k, got[0].addr, 4);
            if (m != 1 + k % MG_DNS_ADDRS) {
                torn++;
            }
            for (i = 0; i < m; i++) {
                if (memcmp(got[i].addr, &k, 4) != 0 || got[i].addr[4] != m
                    || got[i].addr[5] != i) {
                    torn++;
                }
            }
            if (k < last) {
                back++;
            }
            last = k;
            continue;
        }
        if (mg_dns_addr(ep, &peer) != MG_OK) {
            again++;
            continue;
        }
        sin6 = (const struct sockaddr_in6 *)&peer.addr;
        memcpy(&k, sin6->sin6_addr.s6_addr, 4);
        m = sin6->sin6_addr.s6_addr[4];
        if (m != 1 + k % MG_DNS_ADDRS || sin6->sin6_addr.s6_addr[5] >= m
            || ntohs(sin6->sin6_port) != 80) {
            torn++;
        }
    }
    if (!done) {
        waitpid(pid, &status, 0);
    }
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
       "the writer published %d lists", WRITER_LISTS);
    ok(whole > 1000, "%lu reads, %lu of whole lists", reads, whole);
    is_int(torn, 0, "no read mixed two lists");
    is_int(back, 0, "no read went back to an older list");
    ok(again * 100 <= reads, "readers rarely had to give up (%lu)", again);
    fill(WRITER_LISTS, ips, &n);
    ok(mg_dns_read(ep->dns_slot, got) == n
       && memcmp(got, ips, n * sizeof(ips[0])) == 0,
       "the last list is the one that stays");
    mg_snapshot_free(snap);
}

static void
test_text(void)
{
    mg_dns_ip_t ip = ip4(10, 1, 2, 3);
    char buf[MG_DNS_PEER_LEN];

    mg_dns_ip_text(&ip, 0, buf, sizeof(buf));
    ok(strcmp(buf, "10.1.2.3") == 0, "an IPv4 address");
    mg_dns_ip_text(&ip, 443, buf, sizeof(buf));
    ok(strcmp(buf, "10.1.2.3:443") == 0, "with its port");
    ip = ip6_loopback();
    mg_dns_ip_text(&ip, 65535, buf, sizeof(buf));
    ok(strcmp(buf, "[::1]:65535") == 0, "an IPv6 address in brackets");
}

int
main(void)
{
    char cmd[128];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-dns.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_no_table();
    test_assign();
    test_dead_writer();
    test_concurrent();
    test_text();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        printf("# could not remove %s\n", tmpdir);
    }
    return done_testing();
}
