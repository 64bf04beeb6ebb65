/*
 * Unit tests of the TLS module: the SNI table as a pure function, contexts
 * built from configuration snippets and exercised by in-memory handshakes
 * (SNI, ALPN, versions, client certificates, upstream verification), the
 * shared ticket keys across a rotation done by another process, and the
 * configuration errors, each at its file and line with the path.
 *
 * Certificates are made here with OpenSSL (a test CA, leaves, a client
 * certificate) into a temporary directory.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mg_conf.h"
#include "mg_log.h"
#include "mg_pool.h"
#include "mg_router.h"
#include "mg_snapshot.h"
#include "mg_tls.h"
#include "conf_errors.h"
#include "tap.h"

static char tmpdir[64];
static unsigned ndirs;
static long serial = 1;

/* Certificates --------------------------------------------------------- */

static void
die(const char *what)
{
    printf("Bail out! %s\n", what);
    ERR_print_errors_fp(stdout);
    exit(2);
}

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL || !X509_add_ext(x, ext, -1)) {
        die("X509_add_ext");
    }
    X509_EXTENSION_free(ext);
}

/* Makes a P-256 certificate for |cn| (and subjectAltName |san| unless
 * NULL), signed by |issuer|/|ikey| or self-signed; writes NAME.crt and
 * NAME.key into tmpdir. Returns the certificate; *|key| gets its key. */
static X509 *
make_cert(const char *name, const char *cn, const char *san, int ca,
          X509 *issuer, EVP_PKEY *ikey, EVP_PKEY **key)
{
    char path[256];
    X509_NAME *subj;
    EVP_PKEY *k;
    X509 *x;
    FILE *f;

    k = EVP_EC_gen("P-256");
    x = X509_new();
    if (k == NULL || x == NULL) {
        die("EVP_EC_gen");
    }
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    subj = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subj);
    add_ext(x, issuer ? issuer : x, NID_basic_constraints,
            ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (ca) {
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    if (san != NULL) {
        add_ext(x, issuer ? issuer : x, NID_subject_alt_name, san);
    }
    if (!X509_sign(x, ikey ? ikey : k, EVP_sha256())) {
        die("X509_sign");
    }

    snprintf(path, sizeof(path), "%s/%s.crt", tmpdir, name);
    f = fopen(path, "w");
    if (f == NULL || !PEM_write_X509(f, x) || fclose(f) != 0) {
        die(path);
    }
    snprintf(path, sizeof(path), "%s/%s.key", tmpdir, name);
    f = fopen(path, "w");
    if (f == NULL || !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL)
        || fclose(f) != 0)
    {
        die(path);
    }
    *key = k;
    return x;
}

static X509 *ca_crt, *other_ca_crt;
static EVP_PKEY *ca_key, *other_ca_key;

static void
make_certs(void)
{
    EVP_PKEY *k;
    X509 *x;
    char path[256];
    FILE *f;

    ca_crt = make_cert("ca", "meshgate test CA", NULL, 1, NULL, NULL, &ca_key);
    other_ca_crt = make_cert("other-ca", "another CA", NULL, 1, NULL, NULL,
                             &other_ca_key);
#define LEAF(n, cn, san)                                                     \
    do {                                                                     \
        x = make_cert(n, cn, san, 0, ca_crt, ca_key, &k);                    \
        X509_free(x);                                                        \
        EVP_PKEY_free(k);                                                    \
    } while (0)
    LEAF("default", "default.test", "DNS:default.test");
    LEAF("a", "a.test", "DNS:a.test,DNS:alias.test");
    LEAF("wild", "wild.test", "DNS:*.wild.test");
    LEAF("cnonly", "CN-Only.Test", NULL);
    LEAF("client", "client one", NULL);
    LEAF("upstream", "upstream.test", "DNS:upstream.test");
#undef LEAF
    x = make_cert("stranger", "stranger", NULL, 0, other_ca_crt,
                  other_ca_key, &k);
    X509_free(x);

    /* The key of "stranger" with the certificate of "a": a mismatch. An
     * encrypted key, and a file that is not PEM. */
    snprintf(path, sizeof(path), "%s/enc.key", tmpdir);
    f = fopen(path, "w");
    if (f == NULL
        || !PEM_write_PrivateKey(f, k, EVP_aes_128_cbc(),
                                 (unsigned char *)"secret", 6, NULL, NULL)
        || fclose(f) != 0)
    {
        die(path);
    }
    EVP_PKEY_free(k);
    snprintf(path, sizeof(path), "%s/garbage.pem", tmpdir);
    f = fopen(path, "w");
    if (f == NULL || fputs("this is not PEM\n", f) == EOF || fclose(f) != 0) {
        die(path);
    }
}

/* Config files ----------------------------------------------------------- */

static const char *
new_dir(void)
{
    static char dir[128];

    snprintf(dir, sizeof(dir), "%s/conf%u", tmpdir, ++ndirs);
    if (mkdir(dir, 0700) == -1) {
        perror(dir);
        exit(2);
    }
    return dir;
}

/* Writes |text| as main.conf of a fresh directory, "@T@" replaced by the
 * certificate directory; returns the path. */
static const char *
write_conf(const char *text)
{
    static char path[256];
    const char *p, *at;
    FILE *f;

    snprintf(path, sizeof(path), "%s/main.conf", new_dir());
    f = fopen(path, "w");
    if (f == NULL) {
        die(path);
    }
    for (p = text; (at = strstr(p, "@T@")) != NULL; p = at + 3) {
        fwrite(p, 1, (size_t)(at - p), f);
        fputs(tmpdir, f);
    }
    fputs(p, f);
    if (fclose(f) != 0) {
        die(path);
    }
    return path;
}


/* Loads |text| (with "@T@") and checks that it fails with an error
 * "main.conf:|line|: |reason|" (|reason| also with "@T@"). */
static void
expect_error(const char *text, int line, const char *reason, const char *name)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    char path[256], want[1024];
    const char *p, *at;
    size_t len = 0;

    snprintf(path, sizeof(path), "%s", write_conf(text));
    for (p = reason; (at = strstr(p, "@T@")) != NULL; p = at + 3) {
        len += (size_t)snprintf(want + len, sizeof(want) - len, "%.*s%s",
                                (int)(at - p), p, tmpdir);
    }
    snprintf(want + len, sizeof(want) - len, "%s", p);
    snap = mg_conf_load(path, &errs);
    ok(snap == NULL && has_error(&errs, "%s:%d: %s", path, line, want), "%s",
       name);
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);
}

static mg_snapshot_t *
load_ok(const char *text, const char *name)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    unsigned i;

    snap = mg_conf_load(write_conf(text), &errs);
    ok(snap != NULL && errs.n == 0, "%s", name);
    for (i = 0; i < errs.n; i++) {
        printf("#   got: %s\n", errs.msgs[i]);
    }
    mg_conf_errors_free(&errs);
    return snap;
}

/* Handshakes --------------------------------------------------------------- */

typedef struct hs_s {
    SSL *client;
    SSL *server;
    int ok;
} hs_t;

/* Runs a handshake between a new client from |cctx| (SNI |sni|, ALPN
 * |alpn| in wire format, session |sess|) and a new server from |sctx|, in
 * memory. Then lets the client read what came after (TLS 1.3 tickets). */
static hs_t
handshake(SSL_CTX *cctx, SSL_CTX *sctx, const char *sni, const char *alpn,
          SSL_SESSION *sess)
{
    hs_t h = { NULL, NULL, 0 };
    BIO *bc, *bs;
    int i, rc, rs, done_c = 0, done_s = 0, err;
    char buf[16];

    h.client = SSL_new(cctx);
    h.server = SSL_new(sctx);
    if (h.client == NULL || h.server == NULL
        || !BIO_new_bio_pair(&bc, 0, &bs, 0))
    {
        die("SSL_new");
    }
    SSL_set_bio(h.client, bc, bc);
    SSL_set_bio(h.server, bs, bs);
    SSL_set_connect_state(h.client);
    SSL_set_accept_state(h.server);
    if (sni != NULL) {
        SSL_set_tlsext_host_name(h.client, sni);
    }
    if (alpn != NULL) {
        SSL_set_alpn_protos(h.client, (const unsigned char *)alpn,
                            (unsigned)strlen(alpn));
    }
    if (sess != NULL) {
        SSL_set_session(h.client, sess);
    }
    for (i = 0; i < 50 && !(done_c && done_s); i++) {
        if (!done_c) {
            rc = SSL_do_handshake(h.client);
            if (rc == 1) {
                done_c = 1;
            } else if ((err = SSL_get_error(h.client, rc))
                           != SSL_ERROR_WANT_READ
                       && err != SSL_ERROR_WANT_WRITE)
            {
                break;
            }
        }
        if (!done_s) {
            rs = SSL_do_handshake(h.server);
            if (rs == 1) {
                done_s = 1;
            } else if ((err = SSL_get_error(h.server, rs))
                           != SSL_ERROR_WANT_READ
                       && err != SSL_ERROR_WANT_WRITE)
            {
                break;
            }
        }
    }
    h.ok = done_c && done_s;
    if (h.ok) {
        /* Post-handshake messages: TLS 1.3 tickets, client cert checks. */
        for (i = 0; i < 4; i++) {
            (void)SSL_read(h.client, buf, sizeof(buf));
            (void)SSL_read(h.server, buf, sizeof(buf));
        }
    }
    ERR_clear_error();
    return h;
}

static void
hs_free(hs_t *h)
{
    /* As after close_notify both ways: OpenSSL voids the session of a
     * connection that ends without one. */
    SSL_set_shutdown(h->client, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_shutdown(h->server, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(h->client);
    SSL_free(h->server);
}

/* The CN of the certificate the server presented, in |buf|. */
static const char *
peer_cn(SSL *client, char *buf, size_t len)
{
    X509 *x = SSL_get0_peer_certificate(client);

    buf[0] = '\0';
    if (x != NULL) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
                                  buf, (int)len);
    }
    return buf;
}

static const char *
alpn_of(SSL *ssl, char *buf, size_t len)
{
    const unsigned char *p;
    unsigned n;

    SSL_get0_alpn_selected(ssl, &p, &n);
    snprintf(buf, len, "%.*s", (int)n, p ? (const char *)p : "");
    return buf;
}

static SSL_CTX *
client_ctx(const char *cert, const char *key, int max_version)
{
    char c[256], k[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        die("SSL_CTX_new");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* No client cache: it would void a TLS 1.3 session once it is used,
     * and the tests use one several times. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (max_version) {
        SSL_CTX_set_max_proto_version(ctx, max_version);
    }
    if (cert != NULL) {
        snprintf(c, sizeof(c), "%s/%s", tmpdir, cert);
        snprintf(k, sizeof(k), "%s/%s", tmpdir, key);
        if (SSL_CTX_use_certificate_file(ctx, c, SSL_FILETYPE_PEM) != 1
            || SSL_CTX_use_PrivateKey_file(ctx, k, SSL_FILETYPE_PEM) != 1)
        {
            die(c);
        }
    }
    return ctx;
}

/* Tests ---------------------------------------------------------------- */

static void
test_sni_table(void)
{
    static const char *const names[] = {
        "www.example.com", "*.example.com", "API.Example.com", "example.com.",
        "*.example.com", "www.example.com", "w*.bad.com", "*.b.example.com",
        "*.", "",
    };
    static const unsigned certs[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
    char longname[400];
    mg_tls_sni_t *sni;
    mg_pool_t *pool;

    pool = mg_pool_create(4096);
    sni = mg_tls_sni_build(pool, names, certs, mg_countof(names));
    ok(sni != NULL, "SNI table builds");
    is_int(sni->nexact, 3, "three distinct exact names");
    is_int(sni->nwild, 2, "two distinct wildcards (w*.x is not one)");
    is_int(mg_tls_sni_find(sni, "www.example.com", 15), 1,
           "exact name: its certificate");
    is_int(mg_tls_sni_find(sni, "WWW.EXAMPLE.COM", 15), 1,
           "names compare without case");
    is_int(mg_tls_sni_find(sni, "api.example.com", 15), 3,
           "a name given in upper case in the certificate");
    is_int(mg_tls_sni_find(sni, "www.example.com.", 16), 1,
           "an ending dot is ignored");
    is_int(mg_tls_sni_find(sni, "example.com", 11), 4,
           "the bare domain is an exact name, not the wildcard");
    is_int(mg_tls_sni_find(sni, "shop.example.com", 16), 2,
           "a wildcard covers one label");
    is_int(mg_tls_sni_find(sni, "a.shop.example.com", 18), 0,
           "but not two: the default");
    is_int(mg_tls_sni_find(sni, "x.b.example.com", 15), 8,
           "a deeper wildcard covers its own label");
    is_int(mg_tls_sni_find(sni, ".example.com", 12), 0,
           "an empty first label matches no wildcard");
    is_int(mg_tls_sni_find(sni, "other.org", 9), 0, "unknown: the default");
    is_int(mg_tls_sni_find(sni, "wx.bad.com", 10), 0,
           "partial wildcards are not matched");
    is_int(mg_tls_sni_find(sni, "", 0), 0, "empty name: the default");
    memset(longname, 'a', sizeof(longname));
    is_int(mg_tls_sni_find(sni, longname, sizeof(longname)), 0,
           "an overlong name: the default");
    is_int(mg_tls_sni_find(sni, "www.example.co", 14), 0,
           "a prefix of a name does not match");
    mg_pool_destroy(pool);
}

static const char *listener_conf =
    "gateway = { tls_ticket_rotation = 600; };\n"
    "listeners = ( { name = \"tls\"; listen = \"127.0.0.1:18443\";\n"
    "  routes = \"r\";\n"
    "  tls = { certificates = (\n"
    "      { cert = \"@T@/default.crt\"; key = \"@T@/default.key\"; },\n"
    "      { cert = \"@T@/a.crt\"; key = \"@T@/a.key\"; },\n"
    "      { cert = \"@T@/wild.crt\"; key = \"@T@/wild.key\"; },\n"
    "      { cert = \"@T@/cnonly.crt\"; key = \"@T@/cnonly.key\"; } ); }; },\n"
    "  { name = \"plain\"; listen = \"127.0.0.1:18080\"; routes = \"r\";\n"
    "    h2c = true; },\n"
    "  { name = \"h1only\"; listen = \"127.0.0.1:18444\"; routes = \"r\";\n"
    "    tls = { certificates = ( { cert = \"@T@/a.crt\";\n"
    "                               key = \"@T@/a.key\"; } );\n"
    "            alpn = [ \"http/1.1\" ]; protocols = [ \"TLSv1.2\" ];\n"
    "            ciphers = \"ECDHE+AESGCM\"; session_tickets = false; }; },\n"
    "  { name = \"tls2\"; listen = \"127.0.0.1:18445\"; routes = \"r\";\n"
    "    tls = { certificates = ( { cert = \"@T@/a.crt\";\n"
    "                               key = \"@T@/a.key\"; } ); }; }\n"
    ");\n"
    "routes = { r = ( { domains = [ \"*\" ]; prefix = \"/\";\n"
    "                   direct_response = { status = 200; }; } ); };\n";

static void
test_server(void)
{
    const mg_listener_conf_t *l, *plain, *h1;
    const mg_tls_sni_t *sni;
    mg_snapshot_t *snap;
    SSL_CTX *c12, *c13;
    char buf[128];
    hs_t h;

    snap = load_ok(listener_conf, "a TLS listener with four certificates "
                                  "loads");
    if (snap == NULL) {
        return;
    }
    l = &snap->listeners[0];
    plain = &snap->listeners[1];
    h1 = &snap->listeners[2];
    ok(l->tls != NULL && plain->tls == NULL && h1->tls != NULL,
       "TLS listeners get an SSL_CTX, the cleartext one none");
    ok(l->h2 && !l->h2c && !h1->h2, "h2 is offered by default, not when "
                                    "alpn lacks it");
    ok(plain->h2c && !plain->h2, "h2c on the cleartext listener");
    is_int(l->tls_verify, MG_TLS_VERIFY_OFF, "verify_client is off by "
                                             "default");
    ok(snap->gateway.tls_ticket_rotation == 600, "tls_ticket_rotation");
    sni = mg_tls_server_sni(l->tls);
    ok(sni != NULL && sni->nctxs == 4 && sni->nexact == 4 && sni->nwild == 1,
       "names indexed: three SANs, one CN, one wildcard");
    is_int(mg_tls_sni_find(sni, "cn-only.test", 12), 3,
           "the CN stands in for a certificate without subjectAltName");
    ok(SSL_CTX_get_timeout(l->tls) == 600,
       "sessions live as long as a ticket key is current");
    ok((SSL_CTX_get_options(l->tls) & SSL_OP_NO_RENEGOTIATION)
           && (SSL_CTX_get_options(l->tls) & SSL_OP_CIPHER_SERVER_PREFERENCE)
           && (SSL_CTX_get_mode(l->tls) & SSL_MODE_RELEASE_BUFFERS),
       "no renegotiation, server cipher order, buffers released when idle");

    c13 = client_ctx(NULL, NULL, 0);
    c12 = client_ctx(NULL, NULL, TLS1_2_VERSION);

    h = handshake(c13, l->tls, "a.test", NULL, NULL);
    ok(h.ok && strcmp(peer_cn(h.client, buf, sizeof(buf)), "a.test") == 0,
       "SNI a.test gets the a.test certificate");
    ok(SSL_version(h.client) == TLS1_3_VERSION, "TLS 1.3 by default");
    hs_free(&h);
    h = handshake(c13, l->tls, "ALIAS.test", NULL, NULL);
    ok(h.ok && strcmp(peer_cn(h.client, buf, sizeof(buf)), "a.test") == 0,
       "a second SAN of a certificate, in another case");
    hs_free(&h);
    h = handshake(c13, l->tls, "x.wild.test", NULL, NULL);
    ok(h.ok && strcmp(peer_cn(h.client, buf, sizeof(buf)), "wild.test") == 0,
       "SNI x.wild.test gets the *.wild.test certificate");
    hs_free(&h);
    h = handshake(c13, l->tls, "y.x.wild.test", NULL, NULL);
    ok(h.ok
           && strcmp(peer_cn(h.client, buf, sizeof(buf)), "default.test")
                  == 0,
       "two labels below a wildcard get the default");
    hs_free(&h);
    h = handshake(c13, l->tls, "unknown.test", NULL, NULL);
    ok(h.ok
           && strcmp(peer_cn(h.client, buf, sizeof(buf)), "default.test")
                  == 0,
       "an unknown name gets the default certificate");
    hs_free(&h);
    h = handshake(c12, l->tls, NULL, NULL, NULL);
    ok(h.ok
           && strcmp(peer_cn(h.client, buf, sizeof(buf)), "default.test")
                  == 0,
       "no SNI gets the default certificate");
    ok(SSL_version(h.client) == TLS1_2_VERSION, "TLS 1.2 works too");
    ok(strncmp(SSL_get_cipher_name(h.client), "ECDHE-", 6) == 0
           && strstr(SSL_get_cipher_name(h.client), "GCM") != NULL,
       "TLS 1.2 uses ECDHE with AES-GCM (got %s)",
       SSL_get_cipher_name(h.client));
    hs_free(&h);
    h = handshake(c12, l->tls, "x.wild.test", NULL, NULL);
    ok(h.ok && strcmp(peer_cn(h.client, buf, sizeof(buf)), "wild.test") == 0,
       "SNI selection works with TLS 1.2");
    hs_free(&h);

    h = handshake(c13, l->tls, "a.test", "\x02h2\x08http/1.1", NULL);
    ok(h.ok && strcmp(alpn_of(h.server, buf, sizeof(buf)), "h2") == 0,
       "ALPN: h2 when the client offers h2 and http/1.1");
    hs_free(&h);
    h = handshake(c13, l->tls, "a.test", "\x08http/1.1\x02h2", NULL);
    ok(h.ok && strcmp(alpn_of(h.server, buf, sizeof(buf)), "h2") == 0,
       "ALPN: our order wins over the client's");
    hs_free(&h);
    h = handshake(c13, l->tls, "a.test", "\x08http/1.1", NULL);
    ok(h.ok && strcmp(alpn_of(h.client, buf, sizeof(buf)), "http/1.1") == 0,
       "ALPN: http/1.1 when only that is offered");
    hs_free(&h);
    h = handshake(c13, l->tls, "a.test", NULL, NULL);
    ok(h.ok && strcmp(alpn_of(h.server, buf, sizeof(buf)), "") == 0,
       "no ALPN from the client: none selected (HTTP/1.1)");
    hs_free(&h);
    h = handshake(c13, h1->tls, NULL, "\x02h2\x08http/1.1", NULL);
    ok(h.ok && strcmp(alpn_of(h.client, buf, sizeof(buf)), "http/1.1") == 0,
       "a listener with alpn [\"http/1.1\"] does not pick h2");
    ok(SSL_version(h.client) == TLS1_2_VERSION,
       "protocols = [\"TLSv1.2\"] caps the version");
    hs_free(&h);
    h = handshake(c13, h1->tls, NULL, "\x02h2", NULL);
    ok(!h.ok, "a client offering only h2 there gets no_application_protocol");
    hs_free(&h);

    SSL_CTX_free(c12);
    SSL_CTX_free(c13);
    mg_snapshot_free(snap);
}

/* Resumes |sess| against |sctx|; returns 1 if reused, 0 if not, -1 when the
 * handshake failed. |*next| gets the new session. */
static int
resume(SSL_CTX *cctx, SSL_CTX *sctx, SSL_SESSION *sess, SSL_SESSION **next)
{
    hs_t h = handshake(cctx, sctx, "a.test", NULL, sess);
    int rc = h.ok ? SSL_session_reused(h.client) : -1;

    if (next != NULL) {
        *next = h.ok ? SSL_get1_session(h.client) : NULL;
    }
    hs_free(&h);
    return rc;
}

static const unsigned char *
ticket_of(SSL_SESSION *s, size_t *len)
{
    const unsigned char *t = NULL;

    *len = 0;
    if (s != NULL) {
        SSL_SESSION_get0_ticket(s, &t, len);
    }
    return t;
}

/* Tickets of |version|; |shared|: the ring is in shared memory, so
 * rotation can be tested. */
static void
test_tickets(int version, int shared)
{
    const char *v = version == TLS1_2_VERSION ? "TLS 1.2" : "TLS 1.3";
    SSL_SESSION *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL;
    const unsigned char *t1, *t2;
    size_t l1, l2;
    mg_snapshot_t *snap, *snap2;
    SSL_CTX *cctx, *sctx, *sctx2;
    pid_t pid;
    int st;
    hs_t h;

    snap = load_ok(listener_conf, "config loads for the ticket tests");
    snap2 = load_ok(listener_conf, "and again, as after a reload");
    if (snap == NULL || snap2 == NULL) {
        return;
    }
    sctx = snap->listeners[0].tls;
    sctx2 = snap2->listeners[0].tls;
    cctx = client_ctx(NULL, NULL, version);

    h = handshake(cctx, sctx, "a.test", NULL, NULL);
    s1 = h.ok ? SSL_get1_session(h.client) : NULL;
    hs_free(&h);
    ok(s1 != NULL && SSL_SESSION_is_resumable(s1), "%s: a ticket is issued",
       v);
    is_int(resume(cctx, sctx, s1, &s2), 1, "%s: the session resumes", v);
    is_int(resume(cctx, sctx2, s1, NULL), 1,
           "%s: also with the next snapshot's context (a reload)", v);
    is_int(resume(cctx, snap->listeners[3].tls, s1, NULL), 0,
           "%s: another listener does not resume it", v);
    if (!shared) {
        goto done;
    }

    /* The master rotates in its own process: the workers' keys are in a
     * shared mapping. */
    pid = fork();
    if (pid == 0) {
        mg_tls_tickets_rotate();
        _exit(0);
    }
    waitpid(pid, &st, 0);
    is_int(resume(cctx, sctx, s2, &s3), 1,
           "%s: after a rotation in another process the previous key still "
           "decrypts", v);
    t1 = ticket_of(s2, &l1);
    t2 = ticket_of(s3, &l2);
    ok(s3 != NULL && t2 != NULL && (l1 != l2 || memcmp(t1, t2, l1) != 0),
       "%s: and a new ticket replaces the old one", v);
    is_int(resume(cctx, sctx, s3, NULL), 1, "%s: the new ticket resumes",
           v);
    mg_tls_tickets_rotate();
    mg_tls_tickets_rotate();
    is_int(resume(cctx, sctx, s3, &s4), 0,
           "%s: two rotations later the ticket is refused: full handshake",
           v);
    is_int(resume(cctx, sctx, s4, NULL), 1,
           "%s: and the fresh session resumes", v);
    is_int(resume(cctx, snap->listeners[2].tls, s4, NULL), 0,
           "%s: session_tickets = false resumes nothing", v);

done:
    SSL_SESSION_free(s1);
    SSL_SESSION_free(s2);
    SSL_SESSION_free(s3);
    SSL_SESSION_free(s4);
    SSL_CTX_free(cctx);
    mg_snapshot_free(snap);
    mg_snapshot_free(snap2);
}

static void
test_client_certs(void)
{
    static const char conf[] =
        "listeners = (\n"
        "  { name = \"req\"; listen = \"127.0.0.1:18443\"; routes = \"r\";\n"
        "    tls = { certificates = ( { cert = \"@T@/a.crt\";\n"
        "                               key = \"@T@/a.key\"; },\n"
        "                             { cert = \"@T@/wild.crt\";\n"
        "                               key = \"@T@/wild.key\"; } );\n"
        "            client_ca = \"@T@/ca.crt\";\n"
        "            verify_client = \"required\"; }; },\n"
        "  { name = \"opt\"; listen = \"127.0.0.1:18444\"; routes = \"r\";\n"
        "    tls = { certificates = ( { cert = \"@T@/a.crt\";\n"
        "                               key = \"@T@/a.key\"; } );\n"
        "            client_ca = \"@T@/ca.crt\";\n"
        "            verify_client = \"optional\"; }; } );\n"
        "routes = { r = (\n"
        "  { domains = [ \"*\" ]; prefix = \"/private\";\n"
        "    require_client_cert = true;\n"
        "    direct_response = { status = 200; }; },\n"
        "  { domains = [ \"*\" ]; prefix = \"/\";\n"
        "    direct_response = { status = 200; }; } ); };\n";
    SSL_CTX *anon, *good, *bad;
    SSL_SESSION *sess;
    mg_snapshot_t *snap;
    const mg_listener_conf_t *req, *opt;
    hs_t h;

    snap = load_ok(conf, "listeners with client certificate checks load");
    if (snap == NULL) {
        return;
    }
    req = &snap->listeners[0];
    opt = &snap->listeners[1];
    is_int(req->tls_verify, MG_TLS_VERIFY_REQUIRED, "verify_client required");
    is_int(opt->tls_verify, MG_TLS_VERIFY_OPTIONAL, "verify_client optional");

    anon = client_ctx(NULL, NULL, 0);
    good = client_ctx("client.crt", "client.key", 0);
    bad = client_ctx("stranger.crt", "stranger.key", 0);

    h = handshake(anon, req->tls, "a.test", NULL, NULL);
    ok(!h.ok, "required: no client certificate, no handshake");
    hs_free(&h);
    h = handshake(good, req->tls, "a.test", NULL, NULL);
    ok(h.ok && mg_tls_client_verified(h.server),
       "required: a certificate from client_ca is verified");
    hs_free(&h);
    h = handshake(good, req->tls, "x.wild.test", NULL, NULL);
    ok(h.ok && mg_tls_client_verified(h.server),
       "required: also after SNI switched the certificate");
    hs_free(&h);
    h = handshake(bad, req->tls, "a.test", NULL, NULL);
    ok(!h.ok, "required: a certificate from another CA fails");
    hs_free(&h);
    h = handshake(anon, opt->tls, "a.test", NULL, NULL);
    ok(h.ok && !mg_tls_client_verified(h.server),
       "optional: no certificate passes, unverified");
    hs_free(&h);
    h = handshake(good, opt->tls, "a.test", NULL, NULL);
    ok(h.ok && mg_tls_client_verified(h.server),
       "optional: a good certificate is verified");
    sess = SSL_get1_session(h.client);
    hs_free(&h);
    h = handshake(good, opt->tls, "a.test", NULL, sess);
    ok(h.ok && SSL_session_reused(h.client)
           && mg_tls_client_verified(h.server),
       "optional: a resumed session stays verified");
    hs_free(&h);
    SSL_SESSION_free(sess);
    h = handshake(bad, opt->tls, "a.test", NULL, NULL);
    ok(!h.ok, "optional: a certificate that does not verify fails");
    hs_free(&h);

    ok(mg_router_match(req->routes, mg_str("x"), mg_str("/private/a"))
               ->require_client_cert
           && !mg_router_match(req->routes, mg_str("x"), mg_str("/pub"))
                   ->require_client_cert,
       "require_client_cert is stored on its route only");

    SSL_CTX_free(anon);
    SSL_CTX_free(good);
    SSL_CTX_free(bad);
    mg_snapshot_free(snap);
}

static void
test_upstream(void)
{
    static const char conf[] =
        "listeners = (\n"
        "  { name = \"up\"; listen = \"127.0.0.1:18443\"; routes = \"r\";\n"
        "    tls = { certificates = ( { cert = \"@T@/upstream.crt\";\n"
        "                               key = \"@T@/upstream.key\"; } );\n"
        "            client_ca = \"@T@/ca.crt\";\n"
        "            verify_client = \"optional\"; }; } );\n"
        "routes = { r = ( { domains = [ \"*\" ]; prefix = \"/\";\n"
        "                   cluster = \"good\"; } ); };\n"
        "clusters = (\n"
        "  { name = \"good\";\n"
        "    endpoints = ( { address = \"127.0.0.1:1\"; } );\n"
        "    tls = { ca = \"@T@/ca.crt\"; sni = \"upstream.test\";\n"
        "            cert = \"@T@/client.crt\"; key = \"@T@/client.key\"; }; },\n"
        "  { name = \"wrongca\";\n"
        "    endpoints = ( { address = \"127.0.0.1:1\"; } );\n"
        "    tls = { ca = \"@T@/other-ca.crt\"; sni = \"upstream.test\"; }; },\n"
        "  { name = \"wrongname\";\n"
        "    endpoints = ( { address = \"127.0.0.1:1\"; } );\n"
        "    tls = { ca = \"@T@/ca.crt\"; sni = \"other.test\"; }; },\n"
        "  { name = \"noverify\";\n"
        "    endpoints = ( { address = \"127.0.0.1:1\"; } );\n"
        "    tls = { verify = false; protocols = [ \"TLSv1.2\" ]; }; },\n"
        "  { name = \"clear\";\n"
        "    endpoints = ( { address = \"127.0.0.1:1\"; } ); } );\n";
    const mg_cluster_conf_t *good, *wrongca, *wrongname, *noverify, *clear;
    SSL_CTX *sctx;
    mg_snapshot_t *snap;
    char buf[64];
    hs_t h;

    snap = load_ok(conf, "clusters with tls load");
    if (snap == NULL) {
        return;
    }
    sctx = snap->listeners[0].tls;
    good = &snap->clusters[0];
    wrongca = &snap->clusters[1];
    wrongname = &snap->clusters[2];
    noverify = &snap->clusters[3];
    clear = &snap->clusters[4];
    ok(good->tls != NULL && good->protocol == MG_PROTO_HTTP1
           && strcmp(good->tls_sni, "upstream.test") == 0,
       "http/1.1 over tls, with its sni");
    ok(clear->tls == NULL && clear->protocol == MG_PROTO_HTTP1
           && wrongca->protocol == MG_PROTO_HTTP1,
       "no tls group: cleartext; http/1.1 is the default");

    h = handshake(good->tls, sctx, good->tls_sni, NULL, NULL);
    ok(h.ok && SSL_get_verify_result(h.client) == X509_V_OK,
       "upstream certificate verifies against ca and sni");
    ok(h.ok && strcmp(alpn_of(h.client, buf, sizeof(buf)), "http/1.1") == 0,
       "an http/1.1 cluster offers ALPN http/1.1");
    ok(h.ok && mg_tls_client_verified(h.server),
       "the cluster's client certificate is presented (mTLS)");
    hs_free(&h);
    h = handshake(wrongca->tls, sctx, wrongca->tls_sni, NULL, NULL);
    ok(!h.ok, "an upstream certificate from another CA fails");
    hs_free(&h);
    h = handshake(wrongname->tls, sctx, wrongname->tls_sni, NULL, NULL);
    ok(!h.ok, "an upstream certificate for another name fails");
    hs_free(&h);
    h = handshake(noverify->tls, sctx, NULL, NULL, NULL);
    ok(h.ok && SSL_version(h.client) == TLS1_2_VERSION
           && strcmp(alpn_of(h.client, buf, sizeof(buf)), "http/1.1") == 0,
       "verify = false connects; protocols apply; ALPN http/1.1");
    hs_free(&h);
    mg_snapshot_free(snap);
}

#define L_HEAD                                                               \
    "routes = { r = ( { domains = [ \"*\" ]; prefix = \"/\";\n"   /* 1 */    \
    "  direct_response = { status = 200; }; } ); };\n"            /* 2 */    \
    "listeners = ( { name = \"l\"; listen = \"127.0.0.1:18443\";\n" /* 3 */  \
    "  routes = \"r\";\n"                                         /* 4 */
#define CERT_OK "{ cert = \"@T@/a.crt\"; key = \"@T@/a.key\"; }"

static void
test_errors(void)
{
    expect_error(L_HEAD "  tls = { certificates = (\n"
                        "    { cert = \"@T@/nope.crt\";\n"
                        "      key = \"@T@/a.key\"; } ); }; } );\n",
                 6, "cert \"@T@/nope.crt\": No such file or directory",
                 "a missing cert file: its path and errno text");
    expect_error(L_HEAD "  tls = { certificates = (\n"
                        "    { cert = \"@T@/a.crt\";\n"
                        "      key = \"@T@/nope.key\"; } ); }; } );\n",
                 7, "key \"@T@/nope.key\": No such file or directory",
                 "a missing key file");
    expect_error(L_HEAD "  tls = { certificates = (\n"
                        "    { cert = \"@T@\";\n"
                        "      key = \"@T@/a.key\"; } ); }; } );\n",
                 6, "cert \"@T@\": Is a directory", "a directory as cert");
    expect_error(L_HEAD "  tls = { certificates = (\n"
                        "    { cert = \"@T@/a.crt\";\n"
                        "      key = \"@T@/stranger.key\"; } ); }; } );\n",
                 7,
                 "key \"@T@/stranger.key\" does not match cert "
                 "\"@T@/a.crt\"",
                 "a key that does not match its cert");
    expect_error(L_HEAD "  tls = { certificates = (\n"
                        "    { cert = \"@T@/garbage.pem\";\n"
                        "      key = \"@T@/a.key\"; } ); }; } );\n",
                 6, "cert \"@T@/garbage.pem\": no start line",
                 "a cert that is not PEM");
    expect_error(L_HEAD "  tls = { certificates = (\n"
                        "    { cert = \"@T@/a.crt\";\n"
                        "      key = \"@T@/garbage.pem\"; } ); }; } );\n",
                 7, "key \"@T@/garbage.pem\": ", "a key that is not PEM");
    expect_error(L_HEAD "  tls = { certificates = (\n"
                        "    { cert = \"@T@/a.crt\";\n"
                        "      key = \"@T@/enc.key\"; } ); }; } );\n",
                 7, "key \"@T@/enc.key\": ",
                 "an encrypted key is an error, not a prompt");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " );\n"
                        "    protocols = [ \"TLSv1.3\", \"SSLv3\" ]; }; } );\n",
                 6, "unknown protocol \"SSLv3\"", "an unknown protocol");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " );\n"
                        "    ciphers = \"ECDHE+AESGCM:NOPE-CIPHER\"; }; } );\n",
                 6, "ciphers \"ECDHE+AESGCM:NOPE-CIPHER\": \"NOPE-CIPHER\" "
                    "matches no TLS 1.2 cipher",
                 "a bad cipher in a list that otherwise works");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " );\n"
                        "    ciphersuites = \"TLS_AES_128_GCM_SHA256:TLS_X\";"
                        " }; } );\n",
                 6, "ciphersuites \"TLS_AES_128_GCM_SHA256:TLS_X\": unknown "
                    "TLS 1.3 suite \"TLS_X\"",
                 "a bad TLS 1.3 suite");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " );\n"
                        "    client_ca = \"@T@/none.crt\";\n"
                        "    verify_client = \"required\"; }; } );\n",
                 6, "client_ca \"@T@/none.crt\": No such file or directory",
                 "an unreadable client_ca");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " );\n"
                        "    client_ca = \"@T@/garbage.pem\";\n"
                        "    verify_client = \"required\"; }; } );\n",
                 6, "client_ca \"@T@/garbage.pem\": ",
                 "a client_ca without certificates");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " );\n"
                        "    verify_client = \"optional\"; }; } );\n",
                 6, "verify_client = \"optional\" needs client_ca",
                 "verify_client without client_ca");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " );\n"
                        "    verify_client = \"maybe\"; }; } );\n",
                 6, "key \"verify_client\" must be",
                 "an unknown verify_client value");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " ); };\n"
                        "  h2c = true; } );\n",
                 6, "h2c = true (cleartext HTTP/2) cannot be used with tls",
                 "h2c together with tls");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " );\n"
                        "    alpn = [ \"h2\", \"spdy/3\" ]; }; } );\n",
                 6, "unknown ALPN protocol \"spdy/3\"", "an unknown ALPN name");
    expect_error(L_HEAD "  tls = { certificates = ( ); }; } );\n", 5,
                 "key \"certificates\" must not be empty",
                 "an empty certificate list");
    expect_error(L_HEAD "  tls = { alpn = [ \"h2\" ]; }; } );\n", 5,
                 "missing key \"certificates\" in tls",
                 "tls without certificates");
    expect_error(L_HEAD "  tls = { certificates = ( { cert = \"@T@/a.crt\"; "
                        "} ); }; } );\n",
                 5, "missing key \"key\" in certificate",
                 "a certificate without key");
    expect_error(L_HEAD "  tls = { certificates = (\n"
                        "    { cert = \"@T@/nope.crt\"; key = \"@T@/a.key\"; "
                        "} );\n"
                        "    verify_client = \"required\"; }; } );\n",
                 7, "verify_client = \"required\" needs client_ca",
                 "several errors in one run (the second)");
    expect_error(L_HEAD "  tls = { certificates = ( " CERT_OK " );\n"
                        "    session_tickets = \"yes\"; }; } );\n",
                 6, "key \"session_tickets\" must be true or false",
                 "session_tickets is a bool");
    expect_error(L_HEAD "  }, { name = \"m\"; listen = \"127.0.0.1:18444\";\n"
                        "  routes = \"r\"; tls = { certificates = (\n"
                        "    { cert = \"@T@/a.crt\"; key = \"@T@/a.key\"; },\n"
                        "    { cert = \"@T@/wild.crt\";\n"
                        "      key = \"@T@/a.key\"; } ); }; } );\n",
                 9,
                 "key \"@T@/a.key\" does not match cert \"@T@/wild.crt\"",
                 "a mismatch in the second certificate");

#define C_HEAD                                                               \
    "clusters = ( { name = \"c\";\n"                              /* 1 */    \
    "  endpoints = ( { address = \"127.0.0.1:1\"; } );\n"         /* 2 */
    expect_error(C_HEAD "  protocol = \"h2\"; } );\n", 3,
                 "protocol \"h2\" needs tls", "cluster h2 without tls");
    expect_error(C_HEAD "  protocol = \"h2c\"; tls = { }; } );\n", 3,
                 "protocol \"h2c\" is cleartext HTTP/2",
                 "cluster h2c with tls");
    expect_error(C_HEAD "  protocol = \"h2c\"; keepalive_interval = -1.0; } );\n",
                 3, "key \"keepalive_interval\" must be between 0 and",
                 "a negative PING interval");
    expect_error(C_HEAD "  protocol = \"h2c\"; keepalive_timeout = 0.0; } );\n",
                 3, "key \"keepalive_timeout\" must be greater than 0",
                 "a PING timeout of 0");
    expect_error(C_HEAD "  protocol = \"h3\"; } );\n", 3,
                 "key \"protocol\" must be one of",
                 "an unknown cluster protocol");
    expect_error(C_HEAD "  tls = { ca = \"@T@/none.crt\"; }; } );\n", 3,
                 "ca \"@T@/none.crt\": No such file or directory",
                 "an unreadable cluster ca");
    expect_error(C_HEAD "  tls = {\n"
                        "    cert = \"@T@/client.crt\"; }; } );\n",
                 4, "tls cert needs key", "a cluster cert without key");
    expect_error(C_HEAD "  tls = { cert = \"@T@/client.crt\";\n"
                        "    key = \"@T@/stranger.key\"; }; } );\n",
                 4,
                 "key \"@T@/stranger.key\" does not match cert "
                 "\"@T@/client.crt\"",
                 "a cluster key that does not match its cert");
    expect_error(C_HEAD "  tls = { sni = \"*.example.com\"; }; } );\n", 3,
                 "bad sni \"*.example.com\"", "a wildcard sni");
    expect_error(C_HEAD "  tls = { protocols = [ \"TLSv1.1\" ]; }; } );\n", 3,
                 "unknown protocol \"TLSv1.1\"",
                 "an unknown protocol in a cluster");
    expect_error("gateway = { tls_ticket_rotation = 0; };\n", 1,
                 "key \"tls_ticket_rotation\" must be greater than 0",
                 "tls_ticket_rotation must be positive");
#undef C_HEAD
}

static void
test_relative_paths(void)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    char path[256];
    FILE *f;

    /* The main file sits in tmpdir itself, beside the certificates. */
    snprintf(path, sizeof(path), "%s/rel.conf", tmpdir);
    f = fopen(path, "w");
    if (f == NULL) {
        die(path);
    }
    fputs("listeners = ( { name = \"l\"; listen = \"127.0.0.1:18443\";\n"
          "  routes = \"r\"; tls = { certificates = (\n"
          "    { cert = \"a.crt\"; key = \"a.key\"; } ); }; } );\n"
          "routes = { r = ( ); };\n",
          f);
    fclose(f);
    snap = mg_conf_load(path, &errs);
    ok(snap != NULL && snap->listeners[0].tls != NULL,
       "relative cert paths are relative to the main file");
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);
}

static void
test_error_string(void)
{
    const char *s;

    ERR_raise_data(ERR_LIB_SSL, SSL_R_NO_CIPHER_MATCH, "in %s", "a test");
    s = mg_tls_error_string();
    ok(strstr(s, "no cipher match") != NULL && strstr(s, "in a test") != NULL,
       "mg_tls_error_string formats the queue (%s)", s);
    ok(ERR_peek_error() == 0, "and drains it");
    ok(strcmp(mg_tls_error_string(), "") == 0, "an empty queue is \"\"");
}

int
main(void)
{
    char cmd[128];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-tls.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    make_certs();

    test_sni_table();
    test_server();
    /* Without mg_tls_tickets_init() (meshgate -t) tickets still work with a
     * process-local key; then with the shared ring. */
    test_tickets(TLS1_3_VERSION, 0);
    is_int(mg_tls_tickets_init(), MG_OK, "ticket keys in shared memory");
    is_int(mg_tls_tickets_init(), MG_OK, "a second init does nothing");
    test_tickets(TLS1_3_VERSION, 1);
    test_tickets(TLS1_2_VERSION, 1);
    test_client_certs();
    test_upstream();
    test_errors();
    test_relative_paths();
    test_error_string();

    X509_free(ca_crt);
    X509_free(other_ca_crt);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(other_ca_key);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        printf("# could not remove %s\n", tmpdir);
    }
    return done_testing();
}
