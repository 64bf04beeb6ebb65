/*
 * Unit tests of the configuration loader: a complete valid config, the
 * defaults, conf.d merging, and one check per class of error, each of which
 * must name the right file and line.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mg_access_log.h"
#include "mg_conf.h"
#include "mg_log.h"
#include "mg_pool.h"
#include "mg_router.h"
#include "mg_snapshot.h"
#include "conf_errors.h"
#include "tap.h"

static char tmpdir[64];
static unsigned ndirs;

/* A fresh directory under tmpdir for one case. */
static const char *
new_dir(void)
{
    static char dir[128];

    snprintf(dir, sizeof(dir), "%s/%u", tmpdir, ++ndirs);
    if (mkdir(dir, 0700) == -1) {
        perror(dir);
        exit(2);
    }
    return dir;
}

static const char *
write_file(const char *dir, const char *name, const char *text)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
    return path;
}


/* Loads |text| as a main file and checks that it fails with an error
 * "main.conf:|line|: |reason|" (reason may be a prefix). */
static void
expect_error(const char *text, int line, const char *reason,
             const char *name)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    char path[256];

    snprintf(path, sizeof(path), "%s", write_file(new_dir(), "main.conf",
                                                  text));
    snap = mg_conf_load(path, &errs);
    ok(snap == NULL && has_error(&errs, "%s:%d: %s", path, line, reason),
       "%s", name);
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);
}

static void
expect_ok(const char *text, const char *name)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    unsigned i;

    snap = mg_conf_load(write_file(new_dir(), "main.conf", text), &errs);
    ok(snap != NULL && errs.n == 0, "%s", name);
    for (i = 0; i < errs.n; i++) {
        printf("#   got: %s\n", errs.msgs[i]);
    }
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);
}

static const mg_route_t *
route_of(const mg_listener_conf_t *l, const char *host, const char *path)
{
    return mg_router_match(l->routes, mg_str(host), mg_str(path));
}

static const char full_conf[] =
    "gateway = {\n"                                            /* 1 */
    "  region = \"us-east\"; zone = \"us-east-1a\";\n"
    "  workers = 3; user = \"nobody\"; drain_timeout = 12.5;\n"
    "  log_level = \"info\"; error_log = \"/var/log/mg.log\";\n"
    "  pid_file = \"/run/mg.pid\";\n"                          /* 5 */
    "};\n"
    "admin = { listen = \"[::1]:9901\"; allow_remote = false; };\n"
    "listeners = (\n"
    "  { name = \"public\"; listen = \"*:8080\"; routes = \"web\";\n"
    "    backlog = 1024; max_request_line = 4096;\n"          /* 10 */
    "    max_header_size = 16384; max_headers = 50;\n"
    "    max_body_size = 10737418240L;\n"
    "    request_header_timeout = 5; idle_timeout = 30.5;\n"
    "    send_timeout = 20; access_log = \"/var/log/access.log\"; }\n"
    ");\n"                                                     /* 15 */
    "routes = {\n"
    "  web = (\n"
    "    { domains = [ \"WWW.Example.com\", \"*.example.com\" ];\n"
    "      prefix = \"/api/\"; cluster = \"api\"; upgrade = true;\n"
    "      connect = true; timeout = 3; },\n"                  /* 20 */
    "    { domains = [ \"*\" ]; path = \"/ping\";\n"
    "      direct_response = { status = 204; body = \"x\";\n"
    "                          content_type = \"text/html\"; }; },\n"
    "    { domains = [ \"*\" ]; prefix = \"/\";\n"
    "      redirect = { status = 308; scheme = \"https\";\n"   /* 25 */
    "                   host = \"example.com:8443\"; path = \"/new\"; }; }\n"
    "  );\n"
    "};\n"
    "clusters = (\n"
    "  { name = \"api\"; lb = \"least_request\"; connect_timeout = 0.5;\n"
    "    response_timeout = 7; idle_timeout = 9; max_idle = 8;\n"
    "    endpoints = ( { address = \"10.0.0.1:80\"; weight = 3;\n"
    "                    zone = \"us-east-1a\"; },\n"
    "                  { address = \"[fd00::1]:8080\"; } ); },\n"
    "  { name = \"spare\"; endpoints = ( { address = \"localhost:81\"; } ); }\n"
    ");\n";

static void
test_full(void)
{
    mg_conf_errors_t errs = { NULL, 0 };
    const struct sockaddr_in *sin;
    const struct sockaddr_in6 *sin6;
    const mg_listener_conf_t *l, *a;
    const mg_cluster_conf_t *c;
    const mg_endpoint_conf_t *e;
    const mg_route_t *r;
    mg_snapshot_t *snap;
    char path[256];

    snprintf(path, sizeof(path), "%s",
             write_file(new_dir(), "main.conf", full_conf));
    snap = mg_conf_load(path, &errs);
    ok(snap != NULL && errs.n == 0, "full config loads");
    if (snap == NULL) {
        printf("#   %s\n", errs.n ? errs.msgs[0] : "?");
        mg_conf_errors_free(&errs);
        return;
    }
    ok(strcmp(snap->conf_file, path) == 0, "conf_file is the main file");

    ok(strcmp(snap->gateway.region, "us-east") == 0, "gateway.region");
    ok(strcmp(snap->gateway.zone, "us-east-1a") == 0, "gateway.zone");
    is_int(snap->gateway.workers, 3, "gateway.workers");
    ok(strcmp(snap->gateway.user, "nobody") == 0, "gateway.user");
    ok(snap->gateway.drain_timeout == 12.5, "gateway.drain_timeout");
    is_int(snap->gateway.log_level, MG_LOG_INFO, "gateway.log_level");
    ok(strcmp(snap->gateway.error_log, "/var/log/mg.log") == 0,
       "gateway.error_log");
    ok(strcmp(snap->gateway.pid_file, "/run/mg.pid") == 0,
       "gateway.pid_file");

    is_int(snap->nlisteners, 2, "one listener plus the admin listener");
    l = &snap->listeners[0];
    ok(strcmp(l->name, "public") == 0 && strcmp(l->listen, "*:8080") == 0,
       "listener name and listen");
    sin = (const struct sockaddr_in *)&l->addr;
    ok(sin->sin_family == AF_INET && ntohs(sin->sin_port) == 8080
       && sin->sin_addr.s_addr == htonl(INADDR_ANY)
       && l->addrlen == sizeof(struct sockaddr_in),
       "\"*:8080\" is 0.0.0.0:8080");
    is_int(l->index, 0, "listener index");
    is_int(l->admin, 0, "listener is not admin");
    is_int(l->backlog, 1024, "listener.backlog");
    is_int(l->limits.max_request_line, 4096, "listener.max_request_line");
    is_int(l->limits.max_header_size, 16384, "listener.max_header_size");
    is_int(l->limits.max_headers, 50, "listener.max_headers");
    is_int(l->limits.max_body_size, 10737418240LL,
           "listener.max_body_size (int64)");
    ok(l->request_header_timeout == 5, "listener.request_header_timeout");
    ok(l->idle_timeout == 30.5, "listener.idle_timeout");
    ok(l->send_timeout == 20, "listener.send_timeout");
    ok(l->access_log && strcmp(l->access_log, "/var/log/access.log") == 0,
       "listener.access_log");
    ok(strcmp(l->file, path) == 0 && l->line == 9, "listener file and line");
    ok(l->routes != NULL && strcmp(l->routes->name, "web") == 0,
       "listener points to its route table");

    a = &snap->listeners[1];
    sin6 = (const struct sockaddr_in6 *)&a->addr;
    ok(a->admin && strcmp(a->name, "admin") == 0 && a->routes == NULL
       && a->index == 1, "admin listener appended");
    ok(sin6->sin6_family == AF_INET6 && ntohs(sin6->sin6_port) == 9901
       && strcmp(a->listen, "[::1]:9901") == 0, "admin address [::1]:9901");
    is_int(a->limits.max_headers, 100, "admin listener has default limits");

    is_int(snap->nroute_tables, 1, "one route table");
    r = route_of(l, "www.example.COM:8080", "/api/v1");
    ok(r != NULL && r->action == MG_ROUTE_CLUSTER && !r->path_exact
       && mg_str_eq(r->path, mg_str_lit("/api/")),
       "prefix route to a cluster");
    ok(r && r->cluster == &snap->clusters[0], "route points to its cluster");
    ok(r && r->allow_upgrade && r->allow_connect && r->timeout == 3,
       "route upgrade, connect, timeout");
    ok(r && strcmp(r->file, path) == 0 && r->line == 18,
       "route file and line");
    ok(route_of(l, "a.b.example.com", "/api/") == r, "wildcard domain");
    r = route_of(l, "other", "/ping");
    ok(r && r->action == MG_ROUTE_DIRECT && r->path_exact && r->status == 204
       && mg_str_eq(r->body, mg_str_lit("x"))
       && mg_str_eq(r->content_type, mg_str_lit("text/html")),
       "direct_response route");
    r = route_of(l, "other", "/ping/x");
    ok(r && r->action == MG_ROUTE_REDIRECT && r->redirect_status == 308
       && mg_str_eq(r->redirect_scheme, mg_str_lit("https"))
       && mg_str_eq(r->redirect_host, mg_str_lit("example.com:8443"))
       && mg_str_eq(r->redirect_path, mg_str_lit("/new")),
       "redirect route");

    is_int(snap->nclusters, 2, "two clusters");
    c = &snap->clusters[0];
    ok(strcmp(c->name, "api") == 0 && c->index == 0, "cluster name, index");
    is_int(c->lb, MG_LB_LEAST_REQUEST, "cluster.lb");
    ok(c->connect_timeout == 0.5 && c->response_timeout == 7
       && c->idle_timeout == 9, "cluster timeouts");
    is_int(c->max_idle, 8, "cluster.max_idle");
    ok(strcmp(c->file, path) == 0 && c->line == 30, "cluster file and line");
    is_int(c->npriorities, 1, "one priority");
    is_int(c->priorities[0].nendpoints, 2, "two endpoints");
    is_int(c->priorities[0].total_weight, 4, "total weight");
    e = &c->priorities[0].endpoints[0];
    sin = (const struct sockaddr_in *)&e->addr;
    ok(strcmp(e->address, "10.0.0.1:80") == 0 && e->weight == 3
       && strcmp(e->zone, "us-east-1a") == 0 && ntohs(sin->sin_port) == 80
       && e->cluster == c && e->index == 0, "endpoint 0");
    e = &c->priorities[0].endpoints[1];
    ok(e->addr.ss_family == AF_INET6 && e->weight == 1
       && strcmp(e->zone, "") == 0 && e->index == 1, "endpoint 1 (IPv6)");
    c = &snap->clusters[1];
    e = &c->priorities[0].endpoints[0];
    sin = (const struct sockaddr_in *)&e->addr;
    ok(c->index == 1 && e->index == 2 && e->cluster == c
       && sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK),
       "endpoint indexes run across clusters; localhost is 127.0.0.1");
    is_int(c->lb, MG_LB_ROUND_ROBIN, "default lb");
    is_int(snap->nendpoints, 3, "snapshot counts every endpoint");

    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);
}

static void
test_defaults(void)
{
    static const char text[] =
        "listeners = ( { name = \"l\"; listen = \"127.0.0.1:8000\";\n"
        "                routes = \"t\"; } );\n"
        "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"
        "  direct_response = { status = 200; }; } ); };\n";
    mg_conf_errors_t errs = { NULL, 0 };
    const mg_listener_conf_t *l;
    const mg_route_t *r;
    mg_snapshot_t *snap;

    snap = mg_conf_load(write_file(new_dir(), "main.conf", text), &errs);
    ok(snap != NULL, "minimal config loads");
    if (snap == NULL) {
        mg_conf_errors_free(&errs);
        return;
    }
    ok(strcmp(snap->gateway.region, "default") == 0, "default region");
    ok(strcmp(snap->gateway.zone, "") == 0, "default zone");
    ok(snap->gateway.workers >= 1, "workers auto is at least 1");
    is_int(snap->gateway.workers, sysconf(_SC_NPROCESSORS_ONLN),
           "workers auto is the number of online CPUs");
    ok(strcmp(snap->gateway.user, "nobody") == 0, "default user");
    ok(snap->gateway.drain_timeout == 30, "default drain_timeout");
    is_int(snap->gateway.log_level, MG_LOG_NOTICE, "default log_level");
    ok(strcmp(snap->gateway.error_log, "stderr") == 0, "default error_log");
    ok(snap->gateway.pid_file == NULL, "no pid_file by default");

    is_int(snap->nlisteners, 1, "no admin listener unless configured");
    l = &snap->listeners[0];
    is_int(l->backlog, 511, "default backlog");
    is_int(l->limits.max_request_line, 8192, "default max_request_line");
    is_int(l->limits.max_header_size, 32768, "default max_header_size");
    is_int(l->limits.max_headers, 100, "default max_headers");
    is_int(l->limits.max_body_size, 0, "default max_body_size");
    ok(l->request_header_timeout == 10 && l->idle_timeout == 60
       && l->send_timeout == 60, "default listener timeouts");
    ok(l->access_log == NULL, "access_log off by default");
    r = route_of(l, "x", "/");
    ok(r && mg_str_eq(r->body, mg_str_lit(""))
       && mg_str_eq(r->content_type, mg_str_lit("text/plain"))
       && !r->allow_upgrade && !r->allow_connect && r->timeout == 0,
       "route defaults");
    is_int(snap->nclusters, 0, "no clusters");

    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);
}

static void
test_conf_d(void)
{
    mg_conf_errors_t errs = { NULL, 0 };
    const mg_listener_conf_t *l;
    const mg_route_t *r;
    mg_snapshot_t *snap;
    char main_path[256], cdir[200], bpath[256];
    const char *dir = new_dir();

    snprintf(main_path, sizeof(main_path), "%s",
             write_file(dir, "meshgate.conf",
                        "listeners = ( { name = \"a\"; listen = \"127.0.0.1:1\";"
                        " routes = \"t\"; } );\n"
                        "routes = { t = ( { domains = [\"m\"]; prefix = \"/\";"
                        " cluster = \"c1\"; } ); };\n"
                        "clusters = ( { name = \"c1\"; endpoints = ("
                        " { address = \"127.0.0.1:10\"; } ); } );\n"
                        "@include \"inc/extra.inc\"\n"));
    snprintf(cdir, sizeof(cdir), "%s/inc", dir);
    mkdir(cdir, 0700);
    write_file(cdir, "extra.inc",
               "gateway = { region = \"included\"; };\n");
    snprintf(cdir, sizeof(cdir), "%s/conf.d", dir);
    mkdir(cdir, 0700);
    snprintf(bpath, sizeof(bpath), "%s",
             write_file(cdir, "20-b.conf",
                        "listeners = ( { name = \"b\"; listen = \"127.0.0.1:2\";"
                        " routes = \"u\"; } );\n"
                        "routes = { t = ( { domains = [\"m\"]; prefix = \"/\";"
                        " cluster = \"c3\"; }, { domains = [\"b\"];"
                        " prefix = \"/\"; cluster = \"c2\"; } );\n"
                        "  u = ( { domains = [\"*\"]; prefix = \"/\";"
                        " cluster = \"c1\"; } ); };\n"
                        "clusters = ( { name = \"c3\"; endpoints = ("
                        " { address = \"127.0.0.1:30\"; } ); } );\n"));
    write_file(cdir, "10-a.conf",
               "clusters = ( { name = \"c2\"; endpoints = ("
               " { address = \"127.0.0.1:20\"; } ); } );\n");
    write_file(cdir, "README", "not a config file\n");
    write_file(cdir, "30-c.conf.dpkg-old", "garbage\n");
    write_file(cdir, ".40-d.conf", "garbage\n");

    snap = mg_conf_load(main_path, &errs);
    ok(snap != NULL, "main file with conf.d loads");
    if (snap == NULL) {
        printf("#   %s\n", errs.n ? errs.msgs[0] : "?");
        mg_conf_errors_free(&errs);
        return;
    }
    ok(strcmp(snap->gateway.region, "included") == 0,
       "@include is relative to the main file");
    is_int(snap->nlisteners, 2, "listeners of conf.d are appended");
    ok(strcmp(snap->listeners[1].name, "b") == 0
       && strcmp(snap->listeners[1].file, bpath) == 0
       && snap->listeners[1].line == 1,
       "a conf.d listener keeps its file and line");
    is_int(snap->nclusters, 3, "clusters of conf.d are appended");
    ok(snap->nclusters == 3 && strcmp(snap->clusters[0].name, "c1") == 0
       && strcmp(snap->clusters[1].name, "c2") == 0
       && strcmp(snap->clusters[2].name, "c3") == 0,
       "in lexical order: main, 10-a.conf, 20-b.conf");
    is_int(snap->nroute_tables, 2, "two route tables");
    l = &snap->listeners[0];
    r = route_of(l, "m", "/");
    ok(r && r->cluster == &snap->clusters[0],
       "a merged table keeps the main file's route first");
    r = route_of(l, "b", "/");
    ok(r && r->cluster == &snap->clusters[1],
       "a merged table gets the conf.d routes");
    is_int(l->routes->nexact, 2, "merged table has both hosts");
    r = route_of(&snap->listeners[1], "x", "/");
    ok(r && r->cluster == &snap->clusters[0],
       "a conf.d table routes to a main file cluster");

    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);

    /* An error in a conf.d file names that file. */
    write_file(cdir, "25-bad.conf", "listeners = ( { name = \"z\";\n"
                                    "  listen = \"127.0.0.1:3\";\n"
                                    "  routes = \"t\"; colour = 1; } );\n");
    snap = mg_conf_load(main_path, &errs);
    snprintf(bpath, sizeof(bpath), "%s/25-bad.conf", cdir);
    ok(snap == NULL
       && has_error(&errs, "%s:3: unknown key \"colour\" in listener", bpath),
       "an error in a conf.d file names that file and line");
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);

    write_file(cdir, "25-bad.conf", "listeners = ( { name = \"z\"; }\n");
    snap = mg_conf_load(main_path, &errs);
    ok(snap == NULL && has_error(&errs, "%s:2: syntax error", bpath),
       "a syntax error in a conf.d file names that file and line");
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);
}

/* A valid base to break one thing in; the line numbers below count on it. */
#define BASE_LISTENER                                                       \
    "listeners = ( { name = \"l\"; listen = \"127.0.0.1:8000\";\n"          \
    "                routes = \"t\"; } );\n"
#define BASE_CLUSTER                                                        \
    "clusters = ( { name = \"c\";\n"                                        \
    "  endpoints = ( { address = \"127.0.0.1:9000\"; } ); } );\n"
#define BASE_ROUTES                                                         \
    "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"               \
    "                   cluster = \"c\"; } ); };\n"

static void
test_errors(void)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    char path[256];

    expect_ok(BASE_LISTENER BASE_CLUSTER BASE_ROUTES, "the base loads");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/a\";\n"
                 "  cluster = \"c\"; name = \"api\"; },\n"
                 "  { domains = [\"*\"]; prefix = \"/\";\n"
                 "  cluster = \"c\"; name = \"api\"; } ); };\n", 8,
                 "route name \"api\" is used twice in table \"t\"",
                 "route names are unique in a table");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/a\";\n"
                 "  cluster = \"c\"; name = \"\"; } ); };\n", 6,
                 "key \"name\" must not be empty", "an empty route name");
    expect_error("gateway = { metrics = 3; };\n" BASE_LISTENER BASE_CLUSTER
                 BASE_ROUTES, 1, "", "gateway.metrics is a bool");

    expect_error(BASE_LISTENER BASE_CLUSTER BASE_ROUTES "colour = 1;\n", 7,
                 "unknown key \"colour\" at top level",
                 "unknown top-level key");
    expect_error("gateway = {\n workers = 2;\n colour = \"red\"; };\n", 3,
                 "unknown key \"colour\" in gateway",
                 "unknown key in gateway");
    expect_error(BASE_LISTENER
                 "clusters = ( { name = \"c\"; speed = 1;\n"
                 "  endpoints = ( { address = \"127.0.0.1:9000\"; } ); } );\n"
                 BASE_ROUTES, 3, "unknown key \"speed\" in cluster",
                 "unknown key in cluster");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"
                 "   cluster = \"c\"; retries = 3; } ); };\n", 6,
                 "unknown key \"retries\" in route", "unknown key in route");
    expect_error(BASE_LISTENER
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"127.0.0.1:9000\"; w = 1; } ); "
                 "} );\n" BASE_ROUTES, 4, "unknown key \"w\" in endpoint",
                 "unknown key in endpoint");

    expect_error("gateway = {\n drain_timeout = \"soon\"; };\n", 2,
                 "key \"drain_timeout\" must be a number", "wrong type: number");
    expect_error("listeners = ( { name = 1; listen = \"127.0.0.1:8000\";\n"
                 "                routes = \"t\"; } );\n"
                 BASE_CLUSTER BASE_ROUTES, 1, "key \"name\" must be a string",
                 "wrong type: string");
    expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:8000\";\n"
                 "  routes = \"t\"; max_headers = 1.5; } );\n"
                 BASE_CLUSTER BASE_ROUTES, 2,
                 "key \"max_headers\" must be an integer", "wrong type: int");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"
                 "   cluster = \"c\"; upgrade = 1; } ); };\n", 6,
                 "key \"upgrade\" must be true or false", "wrong type: bool");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = \"*\"; prefix = \"/\";\n"
                 "   cluster = \"c\"; } ); };\n", 5,
                 "key \"domains\" must be an array of strings",
                 "wrong type: array of strings");
    expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:8000\";\n"
                 "  routes = \"t\"; max_headers = 500; } );\n"
                 BASE_CLUSTER BASE_ROUTES, 2,
                 "key \"max_headers\" must be between 1 and 128",
                 "out of range");
    expect_error("gateway = { drain_timeout = 0; };\n", 1,
                 "key \"drain_timeout\" must be greater than 0",
                 "a duration must be positive");
    expect_error("gateway = { workers = \"many\"; };\n", 1,
                 "key \"workers\" must be \"auto\" or an integer",
                 "workers must be auto or a number");
    if (geteuid() == 0) {
        expect_error("gateway = {\n  user = \"no-such-user-mg\"; };\n", 2,
                     "unknown user \"no-such-user-mg\"",
                     "an unknown user is an error when running as root");
    } else {
        expect_ok("gateway = { user = \"no-such-user-mg\"; };\n",
                  "the user is not looked up when not running as root");
    }
    expect_error("gateway = { log_level = \"loud\"; };\n", 1,
                 "key \"log_level\" must be one of", "bad log_level");
    expect_error("gateway = { };\n\ngateway = { };\n", 3,
                 "duplicate setting name", "libconfig duplicate in one file");

    expect_error("listeners = ( { listen = \"127.0.0.1:8000\";\n"
                 "                routes = \"t\"; } );\n"
                 BASE_CLUSTER BASE_ROUTES, 1, "missing key \"name\" in listener",
                 "missing key: enclosing group's line");
    expect_error(BASE_LISTENER
                 "clusters = ( { name = \"c\";\n"
                 " } );\n" BASE_ROUTES, 3,
                 "missing key \"endpoints\" in cluster", "missing endpoints");
    expect_error(BASE_LISTENER
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( ); } );\n" BASE_ROUTES, 4,
                 "cluster \"c\": endpoints must not be empty",
                 "empty endpoints");

    expect_error(BASE_LISTENER
                 "listeners = ( );\n" BASE_CLUSTER BASE_ROUTES, 3,
                 "duplicate setting name", "listeners twice in one file");
    expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:8000\";\n"
                 "                routes = \"t\"; },\n"
                 "  { name = \"l\"; listen = \"127.0.0.1:8001\";\n"
                 "    routes = \"t\"; } );\n" BASE_CLUSTER BASE_ROUTES, 3,
                 "duplicate listener name \"l\", first defined at ",
                 "duplicate listener name");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "clusters2 = 1;\n" BASE_ROUTES, 5,
                 "unknown key \"clusters2\"", "another unknown top-level key");
    expect_error(BASE_LISTENER
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"127.0.0.1:9000\"; } ); },\n"
                 "  { name = \"c\";\n"
                 "  endpoints = ( { address = \"127.0.0.1:9001\"; } ); } );\n"
                 BASE_ROUTES, 5, "duplicate cluster name \"c\", first defined",
                 "duplicate cluster name");
    expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:8000\";\n"
                 "                routes = \"t\"; },\n"
                 "  { name = \"m\"; listen = \"127.0.0.1:8000\";\n"
                 "    routes = \"t\"; } );\n" BASE_CLUSTER BASE_ROUTES, 3,
                 "listener \"m\": address 127.0.0.1:8000 is already used by "
                 "listener \"l\"", "duplicate listen address");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"
                 "   cluster = \"nope\"; } ); };\n", 6,
                 "route in table \"t\": cluster nope is not defined",
                 "dangling cluster reference");
    expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:8000\";\n"
                 "                routes = \"missing\"; } );\n"
                 BASE_CLUSTER BASE_ROUTES, 2,
                 "listener l: route table missing is not defined",
                 "dangling route table");
    expect_error("listeners = ( { name = \"l\"; listen = \"127.0.0.1:99999\";\n"
                 "                routes = \"t\"; } );\n"
                 BASE_CLUSTER BASE_ROUTES, 1,
                 "bad address \"127.0.0.1:99999\": port must be between",
                 "bad listen port");
    expect_error("listeners = ( { name = \"l\"; listen = \"::1:80\";\n"
                 "                routes = \"t\"; } );\n"
                 BASE_CLUSTER BASE_ROUTES, 1,
                 "bad address \"::1:80\": an IPv6 address needs brackets",
                 "IPv6 without brackets");
    expect_error(BASE_LISTENER
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"users..svc:80\"; } ); } );\n"
                 BASE_ROUTES, 4,
                 "bad address \"users..svc:80\": bad host name",
                 "endpoint with a bad host name");
    expect_error(BASE_LISTENER
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"10.0.0.1\"; } ); } );\n"
                 BASE_ROUTES, 4, "bad address \"10.0.0.1\": missing port",
                 "endpoint without a port");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"];\n"
                 "   cluster = \"c\"; } ); };\n", 5,
                 "route needs prefix or path", "route without a path");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"
                 "   } ); };\n", 5,
                 "route needs one of cluster, direct_response or redirect",
                 "route without an action");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"
                 "   cluster = \"c\"; redirect = { path = \"/\"; }; } ); };\n",
                 5, "route has more than one of",
                 "route with two actions");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"a.com:80\"]; prefix = \"/\";\n"
                 "   cluster = \"c\"; } ); };\n", 5,
                 "bad domain \"a.com:80\": ports are not allowed",
                 "port in a domain");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [ ]; prefix = \"/\";\n"
                 "   cluster = \"c\"; } ); };\n", 5,
                 "key \"domains\" must not be empty", "empty domains");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"
                 "   redirect = { status = 302; }; } ); };\n", 6,
                 "redirect needs at least one of scheme, host or path",
                 "empty redirect");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"
                 "   redirect = { status = 305; path = \"/\"; }; } ); };\n", 6,
                 "redirect status must be", "bad redirect status");
    expect_error(BASE_LISTENER BASE_CLUSTER
                 "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";\n"
                 "   direct_response = { status = 200; }; connect = true; } );"
                 " };\n", 6, "connect = true needs a cluster",
                 "connect without a cluster");

    setenv("MG_TEST_PORT", "8123", 1);
    unsetenv("MG_TEST_UNSET");
    expect_error("listeners = ( { name = \"l\";\n"
                 "  listen = \"127.0.0.1:${MG_TEST_UNSET}\";\n"
                 "                routes = \"t\"; } );\n"
                 BASE_CLUSTER BASE_ROUTES, 2,
                 "environment variable MG_TEST_UNSET is not set",
                 "unset environment variable");

    snprintf(path, sizeof(path), "%s",
             write_file(new_dir(), "main.conf",
                        "listeners = ( { name = \"l${MG_TEST_PORT}\";\n"
                        "  listen = \"127.0.0.1:${MG_TEST_PORT}\";\n"
                        "  routes = \"t\"; } );\n"
                        BASE_CLUSTER BASE_ROUTES));
    snap = mg_conf_load(path, &errs);
    ok(snap && strcmp(snap->listeners[0].listen, "127.0.0.1:8123") == 0
       && strcmp(snap->listeners[0].name, "l8123") == 0
       && ntohs(((struct sockaddr_in *)&snap->listeners[0].addr)->sin_port)
              == 8123, "environment variables are substituted");
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);

    expect_error("admin = { listen = \"0.0.0.0:9901\"; };\n", 1,
                 "admin listen address 0.0.0.0:9901 is not loopback; set "
                 "admin.allow_remote = true to allow it",
                 "non-loopback admin refused");
    expect_ok("admin = { listen = \"0.0.0.0:9901\"; allow_remote = true; };\n",
              "non-loopback admin allowed with allow_remote");
    expect_ok("admin = { listen = \"127.0.0.2:9901\"; };\n",
              "admin on any 127/8 address is loopback");
    expect_error("admin = { allow_remote = true; };\n", 1,
                 "missing key \"listen\" in admin", "admin needs listen");
    expect_error(BASE_LISTENER BASE_CLUSTER BASE_ROUTES
                 "admin = { listen = \"127.0.0.1:8000\"; };\n", 1,
                 "listener \"l\": address 127.0.0.1:8000 is already used by "
                 "the admin listener", "admin address clash");

    /* Several errors in one run, each with its own line. */
    snprintf(path, sizeof(path), "%s",
             write_file(new_dir(), "main.conf",
                        "gateway = { colour = 1;\n"
                        "  workers = 0; };\n"
                        "listeners = ( { name = \"l\"; listen = \"nowhere\";\n"
                        "                routes = \"t\"; } );\n"
                        BASE_CLUSTER
                        "routes = { t = ( { domains = [\"*\"]; prefix = \"/\";"
                        "\n   cluster = \"x\"; } ); };\n"));
    snap = mg_conf_load(path, &errs);
    ok(snap == NULL, "several errors: no snapshot");
    ok(has_error(&errs, "%s:1: unknown key \"colour\"", path),
       "several errors: the first");
    ok(has_error(&errs, "%s:2: key \"workers\" must be between", path),
       "several errors: the second");
    ok(has_error(&errs, "%s:3: bad address \"nowhere\"", path),
       "several errors: the third");
    ok(has_error(&errs, "%s:8: route in table \"t\": cluster x", path),
       "several errors: the fourth");
    is_int(errs.n, 4, "several errors: exactly four");
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);

    /* libconfig's own errors and a missing file. */
    expect_error("gateway = {\n workers = = 2;\n};\n", 2, "syntax error",
                 "a syntax error is reported with file and line");
    snprintf(path, sizeof(path), "%s/none/main.conf", tmpdir);
    snap = mg_conf_load(path, &errs);
    ok(snap == NULL && has_error(&errs, "%s: cannot open configuration file",
                                 path), "a missing main file is an error");
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);
}

static void
test_parse_addr(void)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;

    ok(mg_conf_parse_addr("1.2.3.4:80", &ss, &len) == MG_OK
       && sin->sin_family == AF_INET && ntohs(sin->sin_port) == 80
       && sin->sin_addr.s_addr == inet_addr("1.2.3.4"), "1.2.3.4:80");
    ok(mg_conf_parse_addr("[::1]:80", &ss, &len) == MG_OK
       && sin6->sin6_family == AF_INET6 && ntohs(sin6->sin6_port) == 80
       && IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)
       && len == sizeof(struct sockaddr_in6), "[::1]:80");
    ok(mg_conf_parse_addr("*:80", &ss, &len) == MG_OK
       && sin->sin_addr.s_addr == htonl(INADDR_ANY), "*:80");
    ok(mg_conf_parse_addr("0.0.0.0:80", &ss, &len) == MG_OK
       && sin->sin_addr.s_addr == htonl(INADDR_ANY), "0.0.0.0:80");
    ok(mg_conf_parse_addr("localhost:65535", &ss, &len) == MG_OK
       && sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK)
       && ntohs(sin->sin_port) == 65535, "localhost:65535");
    ok(mg_conf_parse_addr("[::]:443", &ss, &len) == MG_OK, "[::]:443");
    is_int(mg_conf_parse_addr("1.2.3.4:0", &ss, &len), MG_ERROR, "port 0");
    is_int(mg_conf_parse_addr("1.2.3.4:65536", &ss, &len), MG_ERROR,
           "port 65536");
    is_int(mg_conf_parse_addr("1.2.3.4", &ss, &len), MG_ERROR, "no port");
    is_int(mg_conf_parse_addr("1.2.3.4:8x", &ss, &len), MG_ERROR, "bad port");
    is_int(mg_conf_parse_addr("1.2.3.4:-1", &ss, &len), MG_ERROR,
           "negative port");
    is_int(mg_conf_parse_addr("1.2.3.400:80", &ss, &len), MG_ERROR,
           "bad IPv4");
    is_int(mg_conf_parse_addr("[::g]:80", &ss, &len), MG_ERROR, "bad IPv6");
    is_int(mg_conf_parse_addr("[::1]80", &ss, &len), MG_ERROR,
           "IPv6 without ':' before the port");
    is_int(mg_conf_parse_addr("example.com:80", &ss, &len), MG_ERROR,
           "host names are not resolved");
    is_int(mg_conf_parse_addr(":80", &ss, &len), MG_ERROR, "empty host");
    is_int(mg_conf_parse_addr("", &ss, &len), MG_ERROR, "empty string");
}

/* Regions, out_of_zone, peering and public listeners, health checks and
 * retries: the snapshot they build, and their mistakes. */
#define R_HEAD                                                              \
    "gateway = { region = \"a\"; };\n"                          /* 1 */     \
    "regions = ( { name = \"b\"; front_proxy = \"10.0.0.2:8443\"; },\n"     \
    "            { name = \"c\"; front_proxy = \"10.0.0.3:8443\"; } );\n"   \
    BASE_LISTENER BASE_ROUTES                                   /* 4-7 */

static void
test_regions(void)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    const mg_cluster_conf_t *cl;
    const mg_endpoint_conf_t *b, *b2;

    snap = mg_conf_load(write_file(new_dir(), "main.conf",
        R_HEAD
        "clusters = ( { name = \"c\"; out_of_zone = [ \"c\", \"b\" ];\n"
        "  health_check = { path = \"/hz\"; interval = 2.0; timeout = 0.5;\n"
        "                   statuses = [ \"200\", \"204-206\" ]; };\n"
        "  retry = { on = [ \"5xx\", \"reset\" ]; attempts = 4; };\n"
        "  endpoints = ( { address = \"127.0.0.1:9000\"; zone = \"a1\"; },\n"
        "                { address = \"127.0.0.1:9001\"; } ); },\n"
        "  { name = \"d\"; out_of_zone = [ \"b\" ];\n"
        "    endpoints = ( { address = \"127.0.0.1:9002\"; } ); } );\n"),
        &errs);
    ok(snap != NULL && errs.n == 0, "regions and out_of_zone load");
    if (snap == NULL) {
        return;
    }
    cl = &snap->clusters[0];
    is_int(cl->npriorities, 3, "local level, then one per region");
    ok(cl->priorities[1].region == &snap->regions[1]
       && cl->priorities[2].region == &snap->regions[0],
       "levels follow out_of_zone's order (c, then b)");
    b = &cl->priorities[2].endpoints[0];
    b2 = &snap->clusters[1].priorities[1].endpoints[0];
    ok(b->region != NULL && strcmp(b->address, "10.0.0.2:8443") == 0
       && b->protocol == MG_PROTO_H2C && b->priority == 2 && b->pos == 3,
       "a region's level holds its front proxy (h2c without tls)");
    ok(b->pool == b2->pool && b->pool == snap->regions[0].pool
       && b->index != b2->index,
       "every cluster reaches a region through one pool");
    ok(cl->priorities[0].endpoints[0].pool
           != cl->priorities[0].endpoints[1].pool,
       "local endpoints have a pool each");
    is_int(snap->npools, snap->nendpoints + 2, "pools: endpoints + regions");
    ok(cl->health_check != NULL
       && cl->priorities[0].endpoints[0].health_check == cl->health_check
       && b->health_check == NULL,
       "the cluster's health check applies to its local endpoints only");
    ok(cl->health_check->statuses[200 / 64] & ((uint64_t)1 << (200 % 64))
       && cl->health_check->statuses[205 / 64] & ((uint64_t)1 << (205 % 64))
       && !(cl->health_check->statuses[201 / 64]
            & ((uint64_t)1 << (201 % 64))),
       "health statuses: codes and ranges");
    ok(cl->retry.on == (MG_RETRY_5XX | MG_RETRY_RESET)
       && cl->retry.attempts == 4,
       "retry on and attempts");
    ok(snap->clusters[1].retry.on
           == (MG_RETRY_CONNECT_FAILURE | MG_RETRY_REFUSED_STREAM)
       && snap->clusters[1].retry.attempts == 3,
       "without retry: connect failures and refused streams, 3 attempts");
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);

    expect_error(R_HEAD
                 "clusters = ( { name = \"c\"; out_of_zone = [ \"z\" ];\n"
                 "  endpoints = ( { address = \"127.0.0.1:1\"; } ); } );\n",
                 8, "cluster \"c\": out_of_zone region \"z\" is not defined",
                 "an out_of_zone region that does not exist");
    expect_error("gateway = { region = \"b\"; };\n"
                 "regions = ( { name = \"b\"; front_proxy = \"10.0.0.2:1\"; } );\n"
                 BASE_LISTENER BASE_CLUSTER BASE_ROUTES, 2,
                 "region \"b\" is this gateway's own region",
                 "a region named like our own");
    expect_error("regions = ( { name = \"b\"; front_proxy = \"10.0.0.2:1\"; },\n"
                 "  { name = \"b\"; front_proxy = \"10.0.0.3:1\"; } );\n"
                 BASE_LISTENER BASE_CLUSTER BASE_ROUTES, 2,
                 "duplicate region \"b\"", "a region defined twice");
    expect_error("regions = ( { name = \"b\"; front_proxy = \"-gw.b:1\"; } );\n"
                 BASE_LISTENER BASE_CLUSTER BASE_ROUTES, 1,
                 "bad front_proxy \"-gw.b:1\": bad host name",
                 "a front proxy with a bad host name");
    expect_error("regions = ( { name = \"b\"; front_proxy = \"10.0.0.2:1\";\n"
                 "  protocol = \"h2\"; } );\n"
                 BASE_LISTENER BASE_CLUSTER BASE_ROUTES, 2,
                 "protocol \"h2\" needs tls", "a region h2 without tls");
    expect_error("listeners = ( { name = \"p\"; listen = \"127.0.0.1:1\";\n"
                 "  routes = \"t\"; peering = true; } );\n"
                 BASE_CLUSTER BASE_ROUTES, 2,
                 "peering = true needs tls with client_ca and "
                 "verify_client = \"required\"",
                 "a peering listener without client certificates");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  health_check = { interval = 1.0; timeout = 2.0; };\n"
                 "  endpoints = ( { address = \"127.0.0.1:1\"; } ); } );\n",
                 6, "health_check timeout (2 s) must not exceed its interval",
                 "a health check timeout over its interval");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  health_check = { statuses = [ \"2xx\" ]; };\n"
                 "  endpoints = ( { address = \"127.0.0.1:1\"; } ); } );\n",
                 6, "status \"2xx\" must be a code", "a bad health status");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  health_check = { type = \"udp\"; };\n"
                 "  endpoints = ( { address = \"127.0.0.1:1\"; } ); } );\n",
                 6, "health_check type must be", "an unknown check type");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  retry = { on = [ \"timeouts\" ]; };\n"
                 "  endpoints = ( { address = \"127.0.0.1:1\"; } ); } );\n",
                 6, "retry on \"timeouts\": must be one of",
                 "an unknown retry condition");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  retry = { on = [ \"retriable-status\" ]; };\n"
                 "  endpoints = ( { address = \"127.0.0.1:1\"; } ); } );\n",
                 6, "retry on \"retriable-status\" needs statuses",
                 "retriable-status without statuses");
}

/* Endpoints and front proxies by host name: kept unresolved in the
 * snapshot (the control process resolves them), with their port and
 * refresh period; names that could never resolve are refused. */
static void
test_host_names(void)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    const mg_cluster_conf_t *cl;
    const mg_endpoint_conf_t *e;
    unsigned i;

    snap = mg_conf_load(write_file(new_dir(), "main.conf",
        "regions = ( { name = \"b\"; front_proxy = \"gw.B.example:8443\";\n"
        "              dns_refresh = 7; } );\n"
        BASE_LISTENER BASE_ROUTES
        "clusters = ( { name = \"c\"; dns_refresh = 2.5;\n"
        "  out_of_zone = [ \"b\" ];\n"
        "  endpoints = ( { address = \"Users.internal:8080\"; },\n"
        "                { address = \"users.internal:8081\"; },\n"
        "                { address = \"svc_1.local.:80\"; },\n"
        "                { address = \"10.0.0.1:80\"; } ); },\n"
        "  { name = \"d\"; endpoints = ( { address = \"d.internal:1\"; } ); }\n"
        ");\n"), &errs);
    ok(snap != NULL && errs.n == 0, "host names load");
    for (i = 0; i < errs.n; i++) {
        printf("#   got: %s\n", errs.msgs[i]);
    }
    if (snap == NULL) {
        return;
    }
    cl = &snap->clusters[0];
    e = &cl->priorities[0].endpoints[0];
    ok(e->host != NULL && strcmp(e->host, "Users.internal") == 0
       && e->port == 8080 && e->addrlen == 0
       && strcmp(e->address, "Users.internal:8080") == 0,
       "an endpoint keeps its host name and port, unresolved");
    ok(e->dns_refresh == 2.5 && e->dns_slot == MG_DNS_NO_SLOT,
       "it takes the cluster's dns_refresh and has no DNS slot yet");
    e = &cl->priorities[0].endpoints[2];
    ok(e->host != NULL && strcmp(e->host, "svc_1.local.") == 0
       && e->port == 80, "'_' and a final dot are allowed");
    e = &cl->priorities[0].endpoints[3];
    ok(e->host == NULL && e->addrlen != 0, "a literal address has no host");
    e = &cl->priorities[1].endpoints[0];
    ok(e->region != NULL && e->host != NULL
       && strcmp(e->host, "gw.B.example") == 0 && e->port == 8443
       && e->dns_refresh == 7, "a front proxy by host name, with the "
       "region's dns_refresh");
    e = &snap->clusters[1].priorities[0].endpoints[0];
    ok(e->dns_refresh == 30, "dns_refresh defaults to 30 s");
    mg_snapshot_free(snap);
    mg_conf_errors_free(&errs);

    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"a.internal:80\"; },\n"
                 "                { address = \"A.Internal:80\"; } ); } );\n",
                 5, "cluster \"c\": endpoint A.Internal:80 is listed twice",
                 "a host name listed twice (whatever its case)");
    expect_ok(BASE_LISTENER BASE_ROUTES
              "clusters = ( { name = \"c\";\n"
              "  endpoints = ( { address = \"a.internal:80\"; },\n"
              "                { address = \"a.internal:81\"; } ); } );\n",
              "one host name on two ports");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"*:80\"; } ); } );\n",
                 6, "bad address \"*:80\": it needs a host",
                 "an endpoint at \"*\"");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"a.internal:0\"; } ); } );\n",
                 6, "bad address \"a.internal:0\": port must be between",
                 "a host name with port 0");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"a.internal\"; } ); } );\n",
                 6, "bad address \"a.internal\": missing port",
                 "a host name without a port");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"a-.internal:80\"; } ); } );\n",
                 6, "bad address \"a-.internal:80\": bad host name",
                 "a label ending in '-'");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"a b:80\"; } ); } );\n",
                 6, "bad address \"a b:80\": bad host name",
                 "a space in a host name");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\";\n"
                 "  endpoints = ( { address = \"a.x2345678901234567890123456789012"
                 "34567890123456789012345678901234.b:80\"; } ); } );\n",
                 6, "bad address", "a label of 64 bytes");
    expect_ok(BASE_LISTENER BASE_ROUTES
              "clusters = ( { name = \"c\";\n"
              "  endpoints = ( { address = \"a.x2345678901234567890123456789012"
              "3456789012345678901234567890123.b:80\"; } ); } );\n",
              "a label of 63 bytes");
    expect_error(BASE_LISTENER BASE_ROUTES
                 "clusters = ( { name = \"c\"; dns_refresh = 0;\n"
                 "  endpoints = ( { address = \"a.internal:80\"; } ); } );\n",
                 5, "key \"dns_refresh\" must be", "dns_refresh 0");
    expect_error("regions = ( { name = \"b\"; front_proxy = \"gw.b:1\";\n"
                 "  dns_refresh = -1; } );\n"
                 BASE_LISTENER BASE_CLUSTER BASE_ROUTES, 2,
                 "key \"dns_refresh\" must be", "a region's dns_refresh < 0");
}

/* Reads the whole of |path| into a malloc'd string; *len its size. */
static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
        perror(path);
        exit(2);
    }
    rewind(f);
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(2);
    }
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* access_log_format compiles once into literals and fields; lines of any
 * length are written whole. */
static void
test_access_log(void)
{
    const mg_access_format_t *fmt;
    mg_access_entry_t e;
    mg_access_log_t *al;
    mg_pool_t *pool;
    char err[256], path[128], *big, *text, *nl;
    size_t len, biglen = 3 * MG_ACCESS_LOG_BUF;
    struct ev_loop *loop = ev_default_loop(0);
    int i;

    pool = mg_pool_create(4096);
    fmt = mg_access_format_compile(pool, "a%%b %status%-%method%%path%", err,
                                   sizeof(err));
    ok(fmt != NULL && fmt->nitems == 7 && !fmt->json,
       "a format compiles to literals and fields");
    fmt = mg_access_format_compile(pool, "%client% %bogus%", err,
                                   sizeof(err));
    ok(fmt == NULL && strstr(err, "unknown field \"%bogus%\"") != NULL,
       "an unknown field is refused: %s", err);
    fmt = mg_access_format_compile(pool, "%client", err, sizeof(err));
    ok(fmt == NULL && strstr(err, "unterminated") != NULL,
       "an unterminated field is refused");

    memset(&e, 0, sizeof(e));
    e.client = "127.0.0.1";
    e.listener = "mesh";
    e.method = "GET";
    e.method_len = 3;
    e.protocol = "HTTP/1.1";
    e.status = 200;
    e.host = "h\"x";
    e.host_len = 3;
    e.request_id = "id";
    big = malloc(biglen);
    if (big == NULL) {
        exit(2);
    }
    for (i = 0; i < (int)biglen; i++) {
        big[i] = (char)('a' + i % 26);
    }
    big[0] = '/';
    big[1] = '\x01';

    snprintf(path, sizeof(path), "%s/access.log", new_dir());
    al = calloc(1, sizeof(*al));
    fmt = mg_access_format_compile(pool, "%path% %host% %upstream%", err,
                                   sizeof(err));
    if (al == NULL || fmt == NULL
        || mg_access_log_open(al, loop, path, fmt) != MG_OK) {
        exit(2);
    }
    e.path = "/small";
    e.path_len = 6;
    mg_access_log_write(al, &e);
    e.path = big;
    e.path_len = biglen;
    mg_access_log_write(al, &e);
    e.path = "/after";
    e.path_len = 6;
    mg_access_log_write(al, &e);
    mg_access_log_close(al);
    text = slurp(path, &len);
    ok(strncmp(text, "/small h\\x22x -\n", 16) == 0,
       "text format: fields, literals, escaping, \"-\" for none");
    nl = strchr(text + 16, '\n');
    is_int(nl != NULL ? nl - (text + 16) : -1, biglen + 3 + 9,
           "a line longer than the buffer is written whole");
    ok(nl != NULL && strncmp(text + 16, "/\\x01cde", 8) == 0,
       "its control byte is escaped");
    ok(nl != NULL && strcmp(nl + 1, "/after h\\x22x -\n") == 0,
       "the next line follows it");
    free(text);

    snprintf(path, sizeof(path), "%s/access.json", new_dir());
    if (mg_access_log_open(al, loop, path, mg_access_format_json())
        != MG_OK) {
        exit(2);
    }
    e.path = "/a\"\x01\xc3\xa9\xff";
    e.path_len = 7;
    e.duration = 0.0125;
    mg_access_log_write(al, &e);
    mg_access_log_close(al);
    text = slurp(path, &len);
    ok(strstr(text, "\"path\":\"/a\\\"\\u0001\xc3\xa9\\u00ff\"") != NULL,
       "JSON: quote, control byte, UTF-8 and a stray byte");
    ok(strstr(text, "\"status\":200,\"bytes\":0,\"duration\":0.013,"
                    "\"duration_ms\":12.500,") != NULL,
       "JSON: numbers are numbers");
    ok(strstr(text, "\"upstream\":null,") != NULL,
       "JSON: a missing value is null");
    ok(len > 0 && text[len - 1] == '\n' && strchr(text, '\n') == text + len - 1,
       "JSON: one line");
    free(text);
    free(al);
    free(big);
    mg_pool_destroy(pool);
}

int
main(void)
{
    char cmd[128];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mg-test-conf.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }

    test_full();
    test_defaults();
    test_conf_d();
    test_errors();
    test_regions();
    test_parse_addr();
    test_host_names();
    test_access_log();

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        printf("# could not remove %s\n", tmpdir);
    }
    return done_testing();
}
