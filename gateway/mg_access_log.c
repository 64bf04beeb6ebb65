#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mg_access_log.h"
#include "mg_log.h"
#include "mg_pool.h"

/* Field names, as in "%name%" and as JSON keys. */
static const char *const access_log_field_names[MG_ACCESS_F_N] = {
    [MG_ACCESS_F_TIME] = "time",
    [MG_ACCESS_F_CLIENT] = "client",
    [MG_ACCESS_F_LISTENER] = "listener",
    [MG_ACCESS_F_METHOD] = "method",
    [MG_ACCESS_F_PATH] = "path",
    [MG_ACCESS_F_PROTOCOL] = "protocol",
    [MG_ACCESS_F_STATUS] = "status",
    [MG_ACCESS_F_BYTES] = "bytes",
    [MG_ACCESS_F_DURATION] = "duration",
    [MG_ACCESS_F_DURATION_MS] = "duration_ms",
    [MG_ACCESS_F_HOST] = "host",
    [MG_ACCESS_F_UPSTREAM] = "upstream",
    [MG_ACCESS_F_UPSTREAM_ADDR] = "upstream_addr",
    [MG_ACCESS_F_CLUSTER] = "cluster",
    [MG_ACCESS_F_TABLE] = "table",
    [MG_ACCESS_F_ROUTE] = "route",
    [MG_ACCESS_F_USER_AGENT] = "user_agent",
    [MG_ACCESS_F_REFERER] = "referer",
    [MG_ACCESS_F_REQUEST_ID] = "request_id",
    [MG_ACCESS_F_PID] = "pid",
};

#define ACCESS_LOG_LIT(s) { MG_ACCESS_F_LITERAL, (s), sizeof(s) - 1 }
#define ACCESS_LOG_FIELD(f) { MG_ACCESS_F_##f, NULL, 0 }

/* The default line, as it was before formats existed. */
static const mg_access_item_t access_log_default_items[] = {
    ACCESS_LOG_FIELD(TIME), ACCESS_LOG_LIT(" "),
    ACCESS_LOG_FIELD(CLIENT), ACCESS_LOG_LIT(" "),
    ACCESS_LOG_FIELD(LISTENER), ACCESS_LOG_LIT(" \""),
    ACCESS_LOG_FIELD(METHOD), ACCESS_LOG_LIT(" "),
    ACCESS_LOG_FIELD(PATH), ACCESS_LOG_LIT(" "),
    ACCESS_LOG_FIELD(PROTOCOL), ACCESS_LOG_LIT("\" "),
    ACCESS_LOG_FIELD(STATUS), ACCESS_LOG_LIT(" "),
    ACCESS_LOG_FIELD(BYTES), ACCESS_LOG_LIT(" "),
    ACCESS_LOG_FIELD(DURATION), ACCESS_LOG_LIT(" host=\""),
    ACCESS_LOG_FIELD(HOST), ACCESS_LOG_LIT("\" upstream=\""),
    ACCESS_LOG_FIELD(UPSTREAM), ACCESS_LOG_LIT("\" request_id=\""),
    ACCESS_LOG_FIELD(REQUEST_ID), ACCESS_LOG_LIT("\" pid="),
    ACCESS_LOG_FIELD(PID),
};

static const mg_access_format_t access_log_default_format = {
    0, 1, mg_countof(access_log_default_items), access_log_default_items
};

static const mg_access_format_t access_log_json_format = { 1, 1, 0, NULL };

/* Where a line is built. Bytes past |room| are counted, not stored, so one
 * pass tells how long the line is when it does not fit. */
typedef struct access_log_out_s {
    char *p;
    size_t room;
    size_t n;                     /* bytes the line needs so far */
} access_log_out_t;

/* What a line needs besides the entry, computed once per line. */
typedef struct access_log_now_s {
    char time[48];
    size_t time_len;
    char pid[24];
    size_t pid_len;
} access_log_now_t;

static const char access_log_hex[] = "0123456789abcdef";

static void
access_log_put(access_log_out_t *o, const char *s, size_t len)
{
    if (o->n + len <= o->room) {
        memcpy(o->p + o->n, s, len);
    }
    o->n += len;
}

static void
access_log_put_ch(access_log_out_t *o, char ch)
{
    if (o->n < o->room) {
        o->p[o->n] = ch;
    }
    o->n++;
}

/* Appends |s| with quotes, backslashes, control and non-ASCII bytes as
 * \xHH. */
static void
access_log_put_text(access_log_out_t *o, const char *s, size_t len)
{
    char esc[4];
    size_t i;
    unsigned char ch;

    esc[0] = '\\';
    esc[1] = 'x';
    for (i = 0; i < len; i++) {
        ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) {
            esc[2] = access_log_hex[ch >> 4];
            esc[3] = access_log_hex[ch & 15];
            access_log_put(o, esc, 4);
        } else {
            access_log_put_ch(o, (char)ch);
        }
    }
}

/* The length of the valid UTF-8 sequence at |s| (at most |len| bytes), or
 * 0 when it is not one (RFC 3629: no overlongs, no surrogates). */
static size_t
access_log_utf8_len(const unsigned char *s, size_t len)
{
    size_t need, i;
    unsigned long cp;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        need = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        need = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        need = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len < need) {
        return 0;
    }
    for (i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        || (need == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
        return 0;
    }
    return need;
}

/* Appends |s| as a JSON string (RFC 8259 §7), quotes included. Valid UTF-8
 * passes; other bytes >= 0x80 become \u00HH, so the line is always valid
 * UTF-8. */
static void
access_log_put_json(access_log_out_t *o, const char *s, size_t len)
{
    char esc[6];
    size_t i, k;
    unsigned char ch;

    access_log_put_ch(o, '"');
    memcpy(esc, "\\u00", 4);
    for (i = 0; i < len; i++) {
        ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            access_log_put_ch(o, '\\');
            access_log_put_ch(o, (char)ch);
        } else if (ch == '\n') {
            access_log_put(o, "\\n", 2);
        } else if (ch == '\r') {
            access_log_put(o, "\\r", 2);
        } else if (ch == '\t') {
            access_log_put(o, "\\t", 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            esc[4] = access_log_hex[ch >> 4];
            esc[5] = access_log_hex[ch & 15];
            access_log_put(o, esc, 6);
        } else if (ch < 0x80) {
            access_log_put_ch(o, (char)ch);
        } else if ((k = access_log_utf8_len((const unsigned char *)s + i,
                                            len - i)) != 0) {
            access_log_put(o, s + i, k);
            i += k - 1;
        } else {
            esc[4] = access_log_hex[ch >> 4];
            esc[5] = access_log_hex[ch & 15];
            access_log_put(o, esc, 6);
        }
    }
    access_log_put_ch(o, '"');
}

/* |v| in decimal; by hand, as printf showed up in profiles. */
static void
access_log_put_uint(access_log_out_t *o, uint64_t v)
{
    char num[24], *p = num + sizeof(num);

    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    access_log_put(o, p, (size_t)(num + sizeof(num) - p));
}

/* |v| >= 0 with three decimals, rounded, as "%.3f" would. */
static void
access_log_put_fixed3(access_log_out_t *o, double v)
{
    uint64_t thousandths = v > 0 ? (uint64_t)(v * 1000. + 0.5) : 0;
    char frac[4];

    access_log_put_uint(o, thousandths / 1000);
    frac[0] = '.';
    frac[1] = (char)('0' + thousandths / 100 % 10);
    frac[2] = (char)('0' + thousandths / 10 % 10);
    frac[3] = (char)('0' + thousandths % 10);
    access_log_put(o, frac, 4);
}

/* Appends field |f| of |e|: escaped for JSON when |json|, else as text. */
static void
access_log_put_field(access_log_out_t *o, unsigned f,
                     const mg_access_entry_t *e, const access_log_now_t *now,
                     int json)
{
    const char *s = NULL;
    size_t len = (size_t)-1;      /* NUL-terminated unless set */

    switch (f) {
    case MG_ACCESS_F_STATUS:
        access_log_put_uint(o, e->status);
        return;
    case MG_ACCESS_F_BYTES:
        access_log_put_uint(o, e->bytes_sent);
        return;
    case MG_ACCESS_F_DURATION:
        access_log_put_fixed3(o, e->duration);
        return;
    case MG_ACCESS_F_DURATION_MS:
        access_log_put_fixed3(o, e->duration * 1000.);
        return;
    case MG_ACCESS_F_PID:
        access_log_put(o, now->pid, now->pid_len);
        return;
    case MG_ACCESS_F_TIME:
        s = now->time;
        len = now->time_len;
        break;
    case MG_ACCESS_F_CLIENT:
        s = e->client;
        break;
    case MG_ACCESS_F_LISTENER:
        s = e->listener;
        break;
    case MG_ACCESS_F_METHOD:
        s = e->method;
        len = e->method_len;
        break;
    case MG_ACCESS_F_PATH:
        s = e->path;
        len = e->path_len;
        break;
    case MG_ACCESS_F_PROTOCOL:
        s = e->protocol;
        break;
    case MG_ACCESS_F_HOST:
        s = e->host;
        len = e->host_len;
        break;
    case MG_ACCESS_F_UPSTREAM:
        s = e->upstream;
        break;
    case MG_ACCESS_F_UPSTREAM_ADDR:
        s = e->upstream_addr;
        break;
    case MG_ACCESS_F_CLUSTER:
        s = e->cluster;
        break;
    case MG_ACCESS_F_TABLE:
        s = e->table;
        break;
    case MG_ACCESS_F_ROUTE:
        s = e->route;
        len = e->route_len;
        break;
    case MG_ACCESS_F_USER_AGENT:
        s = e->user_agent;
        len = e->user_agent_len;
        break;
    case MG_ACCESS_F_REFERER:
        s = e->referer;
        len = e->referer_len;
        break;
    case MG_ACCESS_F_REQUEST_ID:
        s = e->request_id;
        break;
    default:
        return;
    }
    if (s == NULL) {
        if (json) {
            access_log_put(o, "null", 4);
        } else {
            access_log_put_ch(o, '-');
        }
        return;
    }
    if (len == (size_t)-1) {
        len = strlen(s);
    }
    if (json) {
        access_log_put_json(o, s, len);
    } else {
        access_log_put_text(o, s, len);
    }
}

/* Builds the line of |e|, newline included, into |o|. */
static void
access_log_format(access_log_out_t *o, const mg_access_format_t *fmt,
                  const mg_access_entry_t *e, const access_log_now_t *now)
{
    const mg_access_item_t *it;
    unsigned f;

    if (fmt->json) {
        for (f = MG_ACCESS_F_LITERAL + 1; f < MG_ACCESS_F_N; f++) {
            access_log_put(o, f == MG_ACCESS_F_LITERAL + 1 ? "{\"" : ",\"",
                           2);
            access_log_put(o, access_log_field_names[f],
                           strlen(access_log_field_names[f]));
            access_log_put(o, "\":", 2);
            access_log_put_field(o, f, e, now, 1);
        }
        access_log_put(o, "}\n", 2);
        return;
    }
    for (it = fmt->items; it < fmt->items + fmt->nitems; it++) {
        if (it->field == MG_ACCESS_F_LITERAL) {
            access_log_put(o, it->text, it->len);
        } else {
            access_log_put_field(o, it->field, e, now, 0);
        }
    }
    access_log_put_ch(o, '\n');
}

const mg_access_format_t *
mg_access_format_compile(mg_pool_t *pool, const char *spec, char *err,
                         size_t errlen)
{
    mg_access_format_t *fmt;
    mg_access_item_t *items, *it;
    const char *p, *end, *lit;
    size_t len, nlen;
    unsigned f;

    len = strlen(spec);
    fmt = pool ? mg_pcalloc(pool, sizeof(*fmt)) : NULL;
    /* Each item takes at least one byte of |spec|. */
    items = pool ? mg_pcalloc(pool, (len + 1) * sizeof(*items)) : NULL;
    if (fmt == NULL || items == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    it = items;
    p = spec;
    lit = spec;
    while (*p != '\0') {
        if (*p != '%') {
            p++;
            continue;
        }
        if (p > lit) {
            *it++ = (mg_access_item_t){ MG_ACCESS_F_LITERAL, lit,
                                        (size_t)(p - lit) };
        }
        if (p[1] == '%') {
            *it++ = (mg_access_item_t){ MG_ACCESS_F_LITERAL, "%", 1 };
            p += 2;
            lit = p;
            continue;
        }
        end = strchr(p + 1, '%');
        if (end == NULL) {
            snprintf(err, errlen, "unterminated field \"%.40s\" in "
                     "access_log_format; write %%%% for a percent sign", p);
            return NULL;
        }
        nlen = (size_t)(end - p - 1);
        for (f = MG_ACCESS_F_LITERAL + 1; f < MG_ACCESS_F_N; f++) {
            if (strlen(access_log_field_names[f]) == nlen
                && memcmp(access_log_field_names[f], p + 1, nlen) == 0) {
                break;
            }
        }
        if (f == MG_ACCESS_F_N) {
            snprintf(err, errlen, "unknown field \"%%%.*s%%\" in "
                     "access_log_format", (int)mg_min(nlen, 64), p + 1);
            return NULL;
        }
        if (f == MG_ACCESS_F_TIME) {
            fmt->need_time = 1;
        }
        *it++ = (mg_access_item_t){ f, NULL, 0 };
        p = end + 1;
        lit = p;
    }
    if (p > lit) {
        *it++ = (mg_access_item_t){ MG_ACCESS_F_LITERAL, lit,
                                    (size_t)(p - lit) };
    }
    fmt->items = items;
    fmt->nitems = (unsigned)(it - items);
    return fmt;
}

const mg_access_format_t *
mg_access_format_json(void)
{
    return &access_log_json_format;
}

static void
access_log_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_access_log_t *al = (mg_access_log_t *)((char *)w
                          - offsetof(mg_access_log_t, flush_timer));

    mg_access_log_flush(al);
}

int
mg_access_log_open(mg_access_log_t *al, struct ev_loop *loop,
                   const char *path, const mg_access_format_t *fmt)
{
    al->fd = -1;
    al->path = path;
    al->fmt = fmt != NULL ? fmt : &access_log_default_format;
    al->len = 0;
    al->loop = loop;
    al->time_sec = (time_t)-1;
    al->pid_len = (size_t)snprintf(al->pid, sizeof(al->pid), "%d",
                                   (int)getpid());
    ev_timer_init(&al->flush_timer, access_log_on_timer, 1., 0.);
    if (path == NULL) {
        return MG_OK;
    }
    al->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (al->fd == -1) {
        mg_log_error(MG_LOG_ERROR, &mg_log, errno,
                     "cannot open access log \"%s\"", path);
        return MG_ERROR;
    }
    return MG_OK;
}

/* Writes |len| bytes of whole lines in one write(2): O_APPEND keeps them
 * intact among processes. */
static void
access_log_write_out(mg_access_log_t *al, const char *p, size_t len)
{
    ssize_t n;

    do {
        n = write(al->fd, p, len);
    } while (n == -1 && errno == EINTR);
    if (n == -1) {
        mg_log_error(MG_LOG_ERROR, &mg_log, errno,
                     "cannot write access log \"%s\"", al->path);
    } else if ((size_t)n != len) {
        mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                     "short write to access log \"%s\": %zd of %zu bytes",
                     al->path, n, len);
    }
}

void
mg_access_log_flush(mg_access_log_t *al)
{
    if (al->len != 0 && al->fd != -1) {
        access_log_write_out(al, al->buf, al->len);
    }
    al->len = 0;
    ev_timer_stop(al->loop, &al->flush_timer);
}

/* The pid and the time of a line: the date part is formatted once a
 * second, the milliseconds by hand. */
static void
access_log_now(mg_access_log_t *al, access_log_now_t *now, int need_time)
{
    struct timeval tv;
    struct tm tm;
    size_t n, z;
    unsigned ms;

    memcpy(now->pid, al->pid, al->pid_len);
    now->pid_len = al->pid_len;
    now->time_len = 0;
    now->time[0] = '\0';
    if (!need_time) {
        return;
    }
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != al->time_sec) {
        localtime_r(&tv.tv_sec, &tm);
        if (strftime(al->time_prefix, sizeof(al->time_prefix),
                     "%Y-%m-%dT%H:%M:%S", &tm) == 0
            || strftime(al->time_zone, sizeof(al->time_zone), "%z", &tm)
                   == 0) {
            al->time_prefix[0] = al->time_zone[0] = '\0';
        }
        al->time_sec = tv.tv_sec;
    }
    n = strlen(al->time_prefix);
    z = strlen(al->time_zone);
    if (n + 4 + z >= sizeof(now->time)) {
        return;
    }
    memcpy(now->time, al->time_prefix, n);
    ms = (unsigned)(tv.tv_usec / 1000);
    now->time[n++] = '.';
    now->time[n++] = (char)('0' + ms / 100);
    now->time[n++] = (char)('0' + ms / 10 % 10);
    now->time[n++] = (char)('0' + ms % 10);
    memcpy(now->time + n, al->time_zone, z);
    now->time_len = n + z;
}

void
mg_access_log_write(mg_access_log_t *al, const mg_access_entry_t *e)
{
    access_log_now_t now;
    access_log_out_t o;
    char *big;

    if (al->fd == -1) {
        return;
    }
    access_log_now(al, &now, al->fmt->need_time);

    /* Built in place after the pending lines; when it does not fit, the
     * pending lines go out first and it is built again at the start. */
    o.p = al->buf + al->len;
    o.room = sizeof(al->buf) - al->len;
    o.n = 0;
    access_log_format(&o, al->fmt, e, &now);
    if (o.n > o.room) {
        mg_access_log_flush(al);
        o.p = al->buf;
        o.room = sizeof(al->buf);
        o.n = 0;
        access_log_format(&o, al->fmt, e, &now);
    }
    if (o.n > o.room) {
        /* Longer than the buffer: still written whole, on its own. */
        o.room = o.n;
        o.n = 0;
        o.p = big = malloc(o.room);
        if (big == NULL) {
            mg_log_error(MG_LOG_ERROR, &mg_log, errno,
                         "access log line of %zu bytes dropped", o.room);
            return;
        }
        access_log_format(&o, al->fmt, e, &now);
        access_log_write_out(al, big, o.n);
        free(big);
        return;
    }
    al->len += o.n;
    if (!ev_is_active(&al->flush_timer)) {
        ev_timer_set(&al->flush_timer, 1., 0.);
        ev_timer_start(al->loop, &al->flush_timer);
    }
}

void
mg_access_log_reopen(mg_access_log_t *al)
{
    int fd;

    if (al->path == NULL) {
        return;
    }
    mg_access_log_flush(al);
    fd = open(al->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        mg_log_error(MG_LOG_ERROR, &mg_log, errno,
                     "cannot reopen access log \"%s\"", al->path);
        return;
    }
    if (al->fd != -1) {
        close(al->fd);
    }
    al->fd = fd;
}

void
mg_access_log_close(mg_access_log_t *al)
{
    mg_access_log_flush(al);
    ev_timer_stop(al->loop, &al->flush_timer);
    if (al->fd != -1) {
        close(al->fd);
        al->fd = -1;
    }
}
