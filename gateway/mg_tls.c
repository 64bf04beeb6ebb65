/*
 * TLS contexts from the configuration, SNI certificate selection and the
 * shared, rotating session ticket keys.
 *
 * A listener with several certificates gets one SSL_CTX per certificate,
 * all configured alike. The first is the listener's; its servername
 * callback looks the SNI up in a sorted table and switches the handshake
 * with SSL_set_SSL_CTX(), as nginx does for its virtual servers. Tickets are
 * always encrypted by the first context's callback (OpenSSL uses the
 * session context for them), so the switch does not affect resumption.
 *
 * The ticket keys live in one shared mapping created by the master before
 * it forks: the master writes them under a sequence lock, workers only read.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mg_log.h"
#include "mg_pool.h"
#include "mg_snapshot.h"
#include "mg_tls.h"

#define TLS_MAX_NAME        255   /* a DNS name, RFC 1035 */
#define TLS_TICKET_WORDS    10    /* 16 name + 32 AES + 32 HMAC bytes */
#define TLS_SEQ_SPINS       64    /* busy retries before yielding */
#define TLS_SEQ_TRIES       10000 /* then give up: no ticket this time */

/* One ticket key: the name sent in the clear picks the key on decryption
 * (RFC 5077 §4). */
typedef struct tls_ticket_key_s {
    unsigned char name[16];
    unsigned char aes[32];        /* AES-256-CBC */
    unsigned char hmac[32];       /* HMAC-SHA256 */
} tls_ticket_key_t;

/*
 * The key ring. |seq| is odd while the master writes; a reader copies the
 * keys between two loads of |seq| and retries unless both are the same even
 * value. The words are atomics so that the racing copy is well defined.
 */
typedef struct tls_ticket_ring_s {
    atomic_uint seq;
    _Atomic uint64_t cur[TLS_TICKET_WORDS];
    _Atomic uint64_t prev[TLS_TICKET_WORDS];
    atomic_uint has_prev;
} tls_ticket_ring_t;

/* The shared ring (NULL until mg_tls_tickets_init()), and the key of a
 * process that has none (meshgate -t, unit tests), made at the first
 * listener context. Both are set before workers fork. */
static tls_ticket_ring_t *tls_ring;
static tls_ticket_ring_t tls_local_ring;
static int tls_local_ready;

/* The SSL_CTX ex_data slot holding a listener's SNI table. */
static int tls_sni_index = -1;

static char tls_errbuf[1024];

/* What a cluster's TLS offers in ALPN (RFC 7301 wire format). */
static const unsigned char tls_alpn_h2[] = "\x02h2";
static const unsigned char tls_alpn_h1[] = "\x08http/1.1";

typedef struct tls_alpn_s {
    unsigned char *data;          /* wire format: length-prefixed names */
    unsigned len;
} tls_alpn_t;

/* Error reporting while building. */
typedef struct tls_build_s {
    mg_tls_error_cb on_error;
    void *data;
    int failed;
} tls_build_t;

static void MG_PRINTF(3, 4)
tls_report(tls_build_t *b, const void *pos, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->failed = 1;
    b->on_error(b->data, pos, msg);
}

/* The reason of the oldest OpenSSL error (the root cause), or |dflt|;
 * clears the queue. */
static const char *
tls_reason(const char *dflt)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return r != NULL ? r : dflt;
}

const char *
mg_tls_error_string(void)
{
    const char *data;
    unsigned long e;
    size_t len = 0;
    char one[256];
    int flags, n;

    tls_errbuf[0] = '\0';
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (len + 1 >= sizeof(tls_errbuf)) {
            continue;   /* drain the rest */
        }
        ERR_error_string_n(e, one, sizeof(one));
        n = snprintf(tls_errbuf + len, sizeof(tls_errbuf) - len, "%s%s%s%s",
                     len ? "; " : "", one,
                     (flags & ERR_TXT_STRING) && data[0] ? ": " : "",
                     (flags & ERR_TXT_STRING) ? data : "");
        if (n > 0) {
            len = mg_min(len + (size_t)n, sizeof(tls_errbuf) - 1);
        }
    }
    return tls_errbuf;
}

static void
tls_ctx_cleanup(void *data)
{
    SSL_CTX_free(data);
}

/* Keys are never read from a terminal: an encrypted key is an error. */
static int
tls_no_password(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* Reports "|what| "|path|": <errno text>" unless |path| is a readable
 * file. MG_OK or MG_ERROR. */
static int
tls_readable(tls_build_t *b, const void *pos, const char *what,
             const char *path)
{
    struct stat st;
    FILE *f;

    f = fopen(path, "r");
    if (f == NULL) {
        tls_report(b, pos, "%s \"%s\": %s", what, path, strerror(errno));
        return MG_ERROR;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        tls_report(b, pos, "%s \"%s\": %s", what, path, strerror(EISDIR));
        return MG_ERROR;
    }
    fclose(f);
    return MG_OK;
}

/* Common settings ---------------------------------------------------------- */

static int
tls_protocol_version(const char *name)
{
    if (strcmp(name, "TLSv1.2") == 0) {
        return TLS1_2_VERSION;
    }
    if (strcmp(name, "TLSv1.3") == 0) {
        return TLS1_3_VERSION;
    }
    return 0;
}

/* Cipher lists separate items with ':', ' ', ';' or ','. Each item that
 * selects ciphers (not "!x", "-x", "+x", "@x") must match one on its own:
 * OpenSSL ignores unknown items as long as one item matches. */
static void
tls_check_ciphers(tls_build_t *b, SSL_CTX *ctx, const char *list,
                  const void *pos)
{
    char item[256];
    const char *p = list, *end;
    size_t len;

    while (*p != '\0') {
        len = strcspn(p, ": ;,");
        end = p + len;
        if (len > 0 && len < sizeof(item) && strchr("!-+@", p[0]) == NULL) {
            memcpy(item, p, len);
            item[len] = '\0';
            if (SSL_CTX_set_cipher_list(ctx, item) != 1) {
                ERR_clear_error();
                tls_report(b, pos,
                           "ciphers \"%s\": \"%s\" matches no TLS 1.2 "
                           "cipher (TLS 1.3 suites go in ciphersuites)",
                           list, item);
            }
        }
        p = *end ? end + 1 : end;
    }
    if (!b->failed && SSL_CTX_set_cipher_list(ctx, list) != 1) {
        tls_report(b, pos, "ciphers \"%s\": %s", list,
                   tls_reason("no cipher matches"));
    }
}

static int
tls_has_cipher(SSL_CTX *ctx, const char *name)
{
    STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(ctx);
    int i;

    for (i = 0; i < sk_SSL_CIPHER_num(sk); i++) {
        if (strcmp(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(sk, i)), name)
            == 0)
        {
            return 1;
        }
    }
    return 0;
}

/* TLS 1.3 suites: OpenSSL skips unknown names silently, so each is tried
 * alone first. An empty list would turn TLS 1.3 off, which is what
 * protocols is for. */
static void
tls_check_ciphersuites(tls_build_t *b, SSL_CTX *ctx, const char *list,
                       const void *pos)
{
    char item[256];
    const char *p = list, *end;
    size_t len;
    int bad = 0;

    if (list[0] == '\0') {
        tls_report(b, pos, "ciphersuites must not be empty (set protocols "
                           "to turn TLS 1.3 off)");
        return;
    }
    while (*p != '\0') {
        len = strcspn(p, ":");
        end = p + len;
        if (len >= sizeof(item)) {
            len = sizeof(item) - 1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (len == 0 || SSL_CTX_set_ciphersuites(ctx, item) != 1
            || !tls_has_cipher(ctx, item))
        {
            ERR_clear_error();
            tls_report(b, pos, "ciphersuites \"%s\": unknown TLS 1.3 suite "
                               "\"%s\"", list, item);
            bad = 1;
        }
        p = *end ? end + 1 : end;
    }
    if (!bad && SSL_CTX_set_ciphersuites(ctx, list) != 1) {
        tls_report(b, pos, "ciphersuites \"%s\": %s", list,
                   tls_reason("rejected"));
    }
}

/* Versions and ciphers; |check| reports problems (the first context of a
 * listener), later ones only apply what was already checked. */
static void
tls_common_setup(tls_build_t *b, SSL_CTX *ctx, const mg_tls_common_conf_t *c,
                 int check)
{
    int v, lo = TLS1_2_VERSION, hi = TLS1_3_VERSION;
    unsigned i;

    if (c->protocols != NULL) {
        lo = hi = 0;
        for (i = 0; i < c->nprotocols; i++) {
            v = tls_protocol_version(c->protocols[i]);
            if (v == 0) {
                if (check) {
                    tls_report(b, c->protocols_pos,
                               "unknown protocol \"%s\" (use \"TLSv1.2\" "
                               "and/or \"TLSv1.3\")", c->protocols[i]);
                }
                continue;
            }
            lo = lo == 0 ? v : mg_min(lo, v);
            hi = mg_max(hi, v);
        }
        if (c->nprotocols == 0 && check) {
            tls_report(b, c->protocols_pos, "protocols must not be empty");
        }
        if (lo == 0) {
            lo = TLS1_2_VERSION;
            hi = TLS1_3_VERSION;
        }
    }
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);

    if (check) {
        tls_check_ciphers(b, ctx, c->ciphers ? c->ciphers
                                             : MG_TLS_DEFAULT_CIPHERS,
                          c->ciphers_pos);
        if (c->ciphersuites != NULL) {
            tls_check_ciphersuites(b, ctx, c->ciphersuites,
                                   c->ciphersuites_pos);
        }
        return;
    }
    if (SSL_CTX_set_cipher_list(ctx, c->ciphers ? c->ciphers
                                                : MG_TLS_DEFAULT_CIPHERS)
            != 1
        || (c->ciphersuites != NULL
            && SSL_CTX_set_ciphersuites(ctx, c->ciphersuites) != 1))
    {
        tls_report(b, c->ciphers_pos, "ciphers: %s",
                   tls_reason("rejected"));
    }
}

/* Loads a certificate chain and its key into |ctx|. */
static void
tls_load_pair(tls_build_t *b, SSL_CTX *ctx, const char *cert,
              const void *cert_pos, const char *key, const void *key_pos)
{
    EVP_PKEY *pkey;
    BIO *bio;
    int ok;

    ok = tls_readable(b, cert_pos, "cert", cert) == MG_OK;
    if (ok && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        tls_report(b, cert_pos, "cert \"%s\": %s", cert,
                   tls_reason("no certificate found"));
        ok = 0;
    }
    if (tls_readable(b, key_pos, "key", key) != MG_OK) {
        return;
    }
    bio = BIO_new_file(key, "r");
    pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, tls_no_password, NULL)
               : NULL;
    BIO_free(bio);
    if (pkey == NULL) {
        tls_report(b, key_pos, "key \"%s\": %s (keys must be PEM, not "
                               "encrypted)", key,
                   tls_reason("no private key found"));
        return;
    }
    if (ok && !X509_check_private_key(SSL_CTX_get0_certificate(ctx), pkey)) {
        ERR_clear_error();
        tls_report(b, key_pos, "key \"%s\" does not match cert \"%s\"", key,
                   cert);
    } else if (ok && SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
        tls_report(b, key_pos, "key \"%s\": %s", key,
                   tls_reason("rejected"));
    }
    EVP_PKEY_free(pkey);
}

/* Session tickets ------------------------------------------------------------ */

/* Stores |w| into the key words |words|. */
static void
tls_ticket_store(_Atomic uint64_t *words, const uint64_t *w)
{
    unsigned i;

    for (i = 0; i < TLS_TICKET_WORDS; i++) {
        atomic_store_explicit(&words[i], w[i], memory_order_relaxed);
    }
}

static int
tls_ticket_key_new(_Atomic uint64_t *words)
{
    uint64_t w[TLS_TICKET_WORDS];

    if (RAND_bytes((unsigned char *)w, sizeof(w)) != 1) {
        return MG_ERROR;
    }
    tls_ticket_store(words, w);
    OPENSSL_cleanse(w, sizeof(w));
    return MG_OK;
}

int
mg_tls_tickets_init(void)
{
    tls_ticket_ring_t *ring;

    if (tls_ring != NULL) {
        return MG_OK;
    }
    ring = mmap(NULL, sizeof(tls_ticket_ring_t), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ring == MAP_FAILED) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno,
                     "mmap() of the TLS ticket keys");
        return MG_ERROR;
    }
    /* A fresh anonymous mapping is zeroed: seq 0, no previous key. */
    if (tls_ticket_key_new(ring->cur) != MG_OK) {
        mg_log_error(MG_LOG_EMERG, &mg_log, 0,
                     "no random bytes for the TLS ticket key: %s",
                     mg_tls_error_string());
        munmap(ring, sizeof(tls_ticket_ring_t));
        return MG_ERROR;
    }
    tls_ring = ring;
    return MG_OK;
}

/* Writes a new current key into |ring|, keeping the old one as previous.
 * Only one process writes (the master), so writers need no lock. */
static int
tls_ring_rotate(tls_ticket_ring_t *ring)
{
    uint64_t fresh[TLS_TICKET_WORDS], old[TLS_TICKET_WORDS];
    unsigned s, i;

    if (RAND_bytes((unsigned char *)fresh, sizeof(fresh)) != 1) {
        return MG_ERROR;
    }
    for (i = 0; i < TLS_TICKET_WORDS; i++) {
        old[i] = atomic_load_explicit(&ring->cur[i], memory_order_relaxed);
    }
    s = atomic_load_explicit(&ring->seq, memory_order_relaxed);
    atomic_store_explicit(&ring->seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    tls_ticket_store(ring->prev, old);
    tls_ticket_store(ring->cur, fresh);
    atomic_store_explicit(&ring->has_prev, 1, memory_order_relaxed);
    atomic_store_explicit(&ring->seq, s + 2, memory_order_release);
    OPENSSL_cleanse(fresh, sizeof(fresh));
    OPENSSL_cleanse(old, sizeof(old));
    return MG_OK;
}

void
mg_tls_tickets_rotate(void)
{
    if (tls_ring == NULL) {
        return;
    }
    if (tls_ring_rotate(tls_ring) != MG_OK) {
        /* The old key stays current; the next rotation tries again. */
        mg_log_error(MG_LOG_CRIT, &mg_log, 0,
                     "TLS ticket key not rotated: %s", mg_tls_error_string());
    }
}

/* Copies the keys of |ring|: keys[0] current, keys[1] previous. Returns the
 * number of keys, or 0 when the writer held the lock for too long (it died
 * while writing, or is starved): then there is no ticket this time. */
static unsigned
tls_ring_read(tls_ticket_ring_t *ring, tls_ticket_key_t keys[2])
{
    uint64_t w[2][TLS_TICKET_WORDS];
    unsigned s1, s2, i, tries, nprev;

    for (tries = 0; tries < TLS_SEQ_TRIES; tries++) {
        if (tries >= TLS_SEQ_SPINS) {
            sched_yield();
        }
        s1 = atomic_load_explicit(&ring->seq, memory_order_acquire);
        if (s1 & 1) {
            continue;
        }
        for (i = 0; i < TLS_TICKET_WORDS; i++) {
            w[0][i] = atomic_load_explicit(&ring->cur[i],
                                           memory_order_relaxed);
            w[1][i] = atomic_load_explicit(&ring->prev[i],
                                           memory_order_relaxed);
        }
        nprev = atomic_load_explicit(&ring->has_prev, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        s2 = atomic_load_explicit(&ring->seq, memory_order_relaxed);
        if (s1 == s2) {
            memcpy(&keys[0], w[0], sizeof(tls_ticket_key_t));
            memcpy(&keys[1], w[1], sizeof(tls_ticket_key_t));
            OPENSSL_cleanse(w, sizeof(w));
            return nprev ? 2 : 1;
        }
    }
    return 0;
}

static int
tls_mac_init(EVP_MAC_CTX *hctx, unsigned char *key)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[3];

    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key,
                                                  32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 digest, 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/*
 * OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb):
 * encrypts with the current key; decrypts with the key the ticket names,
 * asking for a fresh ticket (2) when that is the previous one. 0 means no
 * ticket / not decryptable, so a full handshake.
 */
static int
tls_on_ticket_key(SSL *ssl, unsigned char *name, unsigned char *iv,
                  EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    tls_ticket_ring_t *ring = tls_ring ? tls_ring : &tls_local_ring;
    tls_ticket_key_t keys[2];
    unsigned n, i;
    int rc = 0;

    if (ring == &tls_local_ring && !tls_local_ready) {
        return 0;
    }
    n = tls_ring_read(ring, keys);
    if (n == 0) {
        return 0;
    }
    if (enc) {
        memcpy(name, keys[0].name, sizeof(keys[0].name));
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1
            || EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, keys[0].aes,
                                  iv)
                   != 1
            || tls_mac_init(hctx, keys[0].hmac) != 1)
        {
            rc = -1;
        } else {
            rc = 1;
        }
    } else {
        for (i = 0; i < n; i++) {
            if (memcmp(name, keys[i].name, sizeof(keys[i].name)) == 0) {
                break;
            }
        }
        if (i < n) {
            if (tls_mac_init(hctx, keys[i].hmac) != 1
                || EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL,
                                      keys[i].aes, iv)
                       != 1)
            {
                rc = -1;
            } else {
                rc = i == 0 ? 1 : 2;
            }
        }
    }
    OPENSSL_cleanse(keys, sizeof(keys));
    return rc;
}

/* SNI -------------------------------------------------------------------- */

static int
tls_sni_cmp(const void *a, const void *b)
{
    const mg_tls_sni_name_t *x = a, *y = b;
    int c;

    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    c = memcmp(x->name, y->name, x->len);
    if (c != 0) {
        return c;
    }
    return x->cert < y->cert ? -1 : x->cert > y->cert;
}

/* Sorts |v| and drops repeated names, keeping the lowest certificate. */
static unsigned
tls_sni_sort(mg_tls_sni_name_t *v, unsigned n)
{
    unsigned i, out = 0;

    qsort(v, n, sizeof(*v), tls_sni_cmp);
    for (i = 0; i < n; i++) {
        if (out > 0 && v[out - 1].len == v[i].len
            && memcmp(v[out - 1].name, v[i].name, v[i].len) == 0)
        {
            continue;
        }
        v[out++] = v[i];
    }
    return out;
}

mg_tls_sni_t *
mg_tls_sni_build(mg_pool_t *pool, const char *const *names,
                 const unsigned *certs, unsigned n)
{
    mg_tls_sni_name_t *e;
    mg_tls_sni_t *sni;
    const char *s;
    char *copy;
    size_t len;
    unsigned i, j;
    int wild;

    sni = mg_pcalloc(pool, sizeof(mg_tls_sni_t));
    if (sni == NULL) {
        return NULL;
    }
    sni->exact = mg_pcalloc(pool, (n + 1) * sizeof(mg_tls_sni_name_t));
    sni->wild = mg_pcalloc(pool, (n + 1) * sizeof(mg_tls_sni_name_t));
    if (sni->exact == NULL || sni->wild == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        s = names[i];
        len = strlen(s);
        wild = len > 2 && s[0] == '*' && s[1] == '.';
        if (wild) {
            s += 2;
            len -= 2;
        }
        if (len > 0 && s[len - 1] == '.') {
            len--;
        }
        /* Other wildcard forms ("w*.example.com") are not matched. */
        if (len == 0 || len > TLS_MAX_NAME || memchr(s, '*', len) != NULL) {
            continue;
        }
        copy = mg_pstrndup(pool, s, len);
        if (copy == NULL) {
            return NULL;
        }
        for (j = 0; j < len; j++) {
            if (copy[j] >= 'A' && copy[j] <= 'Z') {
                copy[j] = (char)(copy[j] - 'A' + 'a');
            }
        }
        e = wild ? &sni->wild[sni->nwild++] : &sni->exact[sni->nexact++];
        e->name = copy;
        e->len = (unsigned)len;
        e->cert = certs[i];
    }
    sni->nexact = tls_sni_sort(sni->exact, sni->nexact);
    sni->nwild = tls_sni_sort(sni->wild, sni->nwild);
    return sni;
}

static const mg_tls_sni_name_t *
tls_sni_search(const mg_tls_sni_name_t *v, unsigned n, const char *name,
               unsigned len)
{
    unsigned lo = 0, hi = n, mid;
    int c;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (v[mid].len != len) {
            c = v[mid].len < len ? -1 : 1;
        } else {
            c = memcmp(v[mid].name, name, len);
        }
        if (c == 0) {
            return &v[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

unsigned
mg_tls_sni_find(const mg_tls_sni_t *sni, const char *name, size_t len)
{
    const mg_tls_sni_name_t *e;
    char buf[TLS_MAX_NAME + 1];
    const char *dot;
    size_t i;

    if (len > 0 && name[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len > TLS_MAX_NAME) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        buf[i] = name[i] >= 'A' && name[i] <= 'Z'
                     ? (char)(name[i] - 'A' + 'a')
                     : name[i];
    }
    e = tls_sni_search(sni->exact, sni->nexact, buf, (unsigned)len);
    if (e != NULL) {
        return e->cert;
    }
    /* "*.example.com" covers exactly one non-empty label. */
    dot = memchr(buf, '.', len);
    if (dot == NULL || dot == buf) {
        return 0;
    }
    dot++;
    e = tls_sni_search(sni->wild, sni->nwild, dot,
                       (unsigned)(len - (size_t)(dot - buf)));
    return e != NULL ? e->cert : 0;
}

const mg_tls_sni_t *
mg_tls_server_sni(SSL_CTX *ctx)
{
    return tls_sni_index == -1 ? NULL : SSL_CTX_get_ex_data(ctx, tls_sni_index);
}

static int
tls_on_servername(SSL *ssl, int *alert, void *arg)
{
    const mg_tls_sni_t *sni = arg;
    const char *name;
    unsigned i;

    name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    i = mg_tls_sni_find(sni, name, strlen(name));
    if (i != 0 && SSL_set_SSL_CTX(ssl, sni->ctxs[i]) == NULL) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* The DNS names of |x| (subjectAltName, else the subject CN) are appended
 * to |names|/|certs| as copies in |pool|, for certificate |cert|. */
static void
tls_cert_names(mg_pool_t *pool, X509 *x, unsigned cert, const char **names,
               unsigned *certs, unsigned *n, unsigned max)
{
    GENERAL_NAMES *gens;
    const GENERAL_NAME *g;
    X509_NAME_ENTRY *cn;
    const unsigned char *d;
    unsigned char *utf8;
    int i, len, found = 0;

    gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS) {
            continue;
        }
        d = ASN1_STRING_get0_data(g->d.dNSName);
        len = ASN1_STRING_length(g->d.dNSName);
        if (len <= 0 || memchr(d, '\0', (size_t)len) != NULL) {
            continue;
        }
        found = 1;
        if (*n < max
            && (names[*n] = mg_pstrndup(pool, (const char *)d, (size_t)len))
                   != NULL)
        {
            certs[(*n)++] = cert;
        }
    }
    GENERAL_NAMES_free(gens);
    if (found) {
        return;
    }
    i = X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_commonName,
                                   -1);
    if (i < 0) {
        return;
    }
    cn = X509_NAME_get_entry(X509_get_subject_name(x), i);
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(cn));
    if (len > 0 && memchr(utf8, '\0', (size_t)len) == NULL && *n < max
        && (names[*n] = mg_pstrndup(pool, (const char *)utf8, (size_t)len))
               != NULL)
    {
        certs[(*n)++] = cert;
    }
    if (len >= 0) {
        OPENSSL_free(utf8);
    }
}

/* Server ------------------------------------------------------------------ */

static int
tls_on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
            const unsigned char *in, unsigned int inlen, void *arg)
{
    const tls_alpn_t *alpn = arg;
    unsigned char *sel;

    /* Our order wins; |sel| points into our list, which outlives the
     * connection. RFC 7301 §3.2: no common protocol is a fatal alert. */
    if (SSL_select_next_proto(&sel, outlen, alpn->data, alpn->len, in, inlen)
        != OPENSSL_NPN_NEGOTIATED)
    {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static tls_alpn_t *
tls_alpn_build(tls_build_t *b, mg_pool_t *pool, const mg_tls_server_conf_t *c)
{
    tls_alpn_t *a;
    size_t len = 0, l;
    unsigned i;

    for (i = 0; i < c->nalpn; i++) {
        if (strcmp(c->alpn[i], "h2") != 0
            && strcmp(c->alpn[i], "http/1.1") != 0)
        {
            tls_report(b, c->alpn_pos,
                       "unknown ALPN protocol \"%s\" (use \"h2\" and/or "
                       "\"http/1.1\")", c->alpn[i]);
        }
        len += 1 + strlen(c->alpn[i]);
    }
    if (b->failed || c->nalpn == 0) {
        return NULL;
    }
    a = mg_pcalloc(pool, sizeof(tls_alpn_t));
    if (a == NULL || (a->data = mg_palloc(pool, len)) == NULL) {
        return NULL;
    }
    for (i = 0; i < c->nalpn; i++) {
        l = strlen(c->alpn[i]);
        a->data[a->len++] = (unsigned char)l;
        memcpy(a->data + a->len, c->alpn[i], l);
        a->len += (unsigned)l;
    }
    return a;
}

/*
 * The session id context: resumption only within the same listener with
 * the same client certificate checks (OpenSSL compares it, and refuses to
 * resume a verified session without one). The CA file's bytes are part of
 * it so that a new client CA voids sessions verified under the old one.
 */
static void
tls_sid_ctx(const mg_tls_server_conf_t *c, unsigned char *sid,
            unsigned *len)
{
    unsigned char buf[4096];
    EVP_MD_CTX *md;
    size_t n;
    FILE *f;

    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        *len = 0;
        return;
    }
    EVP_DigestUpdate(md, c->name, strlen(c->name) + 1);
    EVP_DigestUpdate(md, &c->verify, sizeof(c->verify));
    if (c->client_ca != NULL && (f = fopen(c->client_ca, "r")) != NULL) {
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
            EVP_DigestUpdate(md, buf, n);
        }
        fclose(f);
    }
    EVP_DigestFinal_ex(md, sid, len);
    EVP_MD_CTX_free(md);
}

static SSL_CTX *
tls_new_ctx(tls_build_t *b, mg_pool_t *pool, const SSL_METHOD *method)
{
    SSL_CTX *ctx = SSL_CTX_new(method);

    if (ctx == NULL) {
        tls_report(b, NULL, "cannot create a TLS context: %s",
                   tls_reason("out of memory"));
        return NULL;
    }
    if (mg_pool_cleanup_add(pool, tls_ctx_cleanup, ctx) != MG_OK) {
        SSL_CTX_free(ctx);
        tls_report(b, NULL, "out of memory");
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_password);
    /* Idle connections hold no TLS buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* Everything of a listener context but its certificate; |first| checks and
 * reports, later contexts copy the verification store from it. */
static void
tls_server_setup(tls_build_t *b, SSL_CTX *ctx, SSL_CTX *first,
                 const mg_tls_server_conf_t *c, tls_alpn_t *alpn,
                 const unsigned char *sid, unsigned sidlen)
{
    STACK_OF(X509_NAME) *cas;
    int mode;

    tls_common_setup(b, ctx, &c->common, first == NULL);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION
                                 | SSL_OP_CIPHER_SERVER_PREFERENCE
                                 | SSL_OP_NO_COMPRESSION
                                 | SSL_OP_IGNORE_UNEXPECTED_EOF);

    /* Workers share no session cache: resumption is by tickets only. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, sid, sidlen);
    if (c->session_tickets) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_on_ticket_key);
        if (c->session_timeout > 0) {
            SSL_CTX_set_timeout(ctx, (long)c->session_timeout);
        }
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }

    if (alpn != NULL) {
        SSL_CTX_set_alpn_select_cb(ctx, tls_on_alpn, alpn);
    }

    if (c->verify != MG_TLS_VERIFY_OFF && c->client_ca != NULL) {
        mode = SSL_VERIFY_PEER;
        if (c->verify == MG_TLS_VERIFY_REQUIRED) {
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        }
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    if (c->client_ca == NULL) {
        return;
    }
    if (first != NULL) {
        SSL_CTX_set1_cert_store(ctx, SSL_CTX_get_cert_store(first));
        cas = SSL_dup_CA_list(SSL_CTX_get_client_CA_list(first));
        if (cas != NULL) {
            SSL_CTX_set_client_CA_list(ctx, cas);
        }
        return;
    }
    if (tls_readable(b, c->client_ca_pos, "client_ca", c->client_ca)
        != MG_OK)
    {
        return;
    }
    if (SSL_CTX_load_verify_file(ctx, c->client_ca) != 1) {
        tls_report(b, c->client_ca_pos, "client_ca \"%s\": %s", c->client_ca,
                   tls_reason("no certificate found"));
        return;
    }
    cas = SSL_load_client_CA_file(c->client_ca);
    if (cas == NULL) {
        tls_report(b, c->client_ca_pos, "client_ca \"%s\": %s", c->client_ca,
                   tls_reason("no certificate found"));
        return;
    }
    SSL_CTX_set_client_CA_list(ctx, cas);
}

static void
tls_local_ring_init(void)
{
    if (tls_local_ready) {
        return;
    }
    if (tls_ticket_key_new(tls_local_ring.cur) == MG_OK) {
        tls_local_ready = 1;
    }
}

SSL_CTX *
mg_tls_server_create(mg_pool_t *pool, const mg_tls_server_conf_t *conf)
{
    tls_build_t b = { conf->on_error, conf->data, 0 };
    unsigned char sid[EVP_MAX_MD_SIZE];
    const char **names = NULL;
    unsigned *certs = NULL;
    mg_tls_sni_t *sni;
    tls_alpn_t *alpn;
    unsigned sidlen, i, n = 0, max = 0;
    SSL_CTX **ctxs;
    X509 *x;

    ERR_clear_error();
    if (conf->ncerts == 0) {
        tls_report(&b, NULL, "no certificates");
        return NULL;
    }
    if (conf->session_tickets) {
        tls_local_ring_init();
    }
    if (tls_sni_index == -1) {
        tls_sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    }
    alpn = tls_alpn_build(&b, pool, conf);
    tls_sid_ctx(conf, sid, &sidlen);
    sidlen = mg_min(sidlen, SSL_MAX_SID_CTX_LENGTH);

    ctxs = mg_pcalloc(pool, conf->ncerts * sizeof(SSL_CTX *));
    if (ctxs == NULL) {
        tls_report(&b, NULL, "out of memory");
        return NULL;
    }
    for (i = 0; i < conf->ncerts; i++) {
        ctxs[i] = tls_new_ctx(&b, pool, TLS_server_method());
        if (ctxs[i] == NULL) {
            return NULL;
        }
        tls_server_setup(&b, ctxs[i], i ? ctxs[0] : NULL, conf, alpn, sid,
                         sidlen);
        tls_load_pair(&b, ctxs[i], conf->certs[i].cert,
                      conf->certs[i].cert_pos, conf->certs[i].key,
                      conf->certs[i].key_pos);
    }
    if (b.failed) {
        ERR_clear_error();
        return NULL;
    }

    /* Index every certificate's names. A certificate has a handful; 64
     * each is plenty, and more are simply not indexed. */
    max = conf->ncerts * 64;
    names = malloc(max * sizeof(char *));
    certs = malloc(max * sizeof(unsigned));
    if (names == NULL || certs == NULL) {
        free(names);
        free(certs);
        tls_report(&b, NULL, "out of memory");
        return NULL;
    }
    for (i = 0; i < conf->ncerts; i++) {
        x = SSL_CTX_get0_certificate(ctxs[i]);
        if (x != NULL) {
            tls_cert_names(pool, x, i, names, certs, &n, max);
        }
    }
    sni = mg_tls_sni_build(pool, names, certs, n);
    free(names);
    free(certs);
    if (sni == NULL) {
        tls_report(&b, NULL, "out of memory");
        return NULL;
    }
    sni->ctxs = ctxs;
    sni->nctxs = conf->ncerts;
    SSL_CTX_set_ex_data(ctxs[0], tls_sni_index, sni);
    if (conf->ncerts > 1) {
        SSL_CTX_set_tlsext_servername_callback(ctxs[0], tls_on_servername);
        SSL_CTX_set_tlsext_servername_arg(ctxs[0], sni);
    }
    ERR_clear_error();
    return ctxs[0];
}

int
mg_tls_client_verified(const SSL *ssl)
{
    return SSL_get0_peer_certificate(ssl) != NULL
           && SSL_get_verify_result(ssl) == X509_V_OK;
}

/* Client ------------------------------------------------------------------ */

SSL_CTX *
mg_tls_client_create(mg_pool_t *pool, const mg_tls_client_conf_t *conf)
{
    tls_build_t b = { conf->on_error, conf->data, 0 };
    X509_VERIFY_PARAM *param;
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = tls_new_ctx(&b, pool, TLS_client_method());
    if (ctx == NULL) {
        return NULL;
    }
    tls_common_setup(&b, ctx, &conf->common, 1);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);

    if (conf->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (conf->ca == NULL) {
            if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
                tls_report(&b, NULL, "cannot load the system CAs: %s",
                           tls_reason("unknown error"));
            }
        } else if (tls_readable(&b, conf->ca_pos, "ca", conf->ca) == MG_OK
                   && SSL_CTX_load_verify_file(ctx, conf->ca) != 1)
        {
            tls_report(&b, conf->ca_pos, "ca \"%s\": %s", conf->ca,
                       tls_reason("no certificate found"));
        }
        if (conf->sni != NULL) {
            param = SSL_CTX_get0_param(ctx);
            X509_VERIFY_PARAM_set_hostflags(
                param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (X509_VERIFY_PARAM_set1_host(param, conf->sni, 0) != 1) {
                tls_report(&b, NULL, "sni \"%s\": %s", conf->sni,
                           tls_reason("not a host name"));
            }
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }

    if (conf->cert != NULL && conf->key != NULL) {
        tls_load_pair(&b, ctx, conf->cert, conf->cert_pos, conf->key,
                      conf->key_pos);
    }

    /* SSL_CTX_set_alpn_protos() returns 0 on success. */
    if (conf->h2 ? SSL_CTX_set_alpn_protos(ctx, tls_alpn_h2,
                                           sizeof(tls_alpn_h2) - 1)
                 : SSL_CTX_set_alpn_protos(ctx, tls_alpn_h1,
                                           sizeof(tls_alpn_h1) - 1))
    {
        tls_report(&b, NULL, "cannot set ALPN: %s", tls_reason("unknown"));
    }
    ERR_clear_error();
    return b.failed ? NULL : ctx;
}
