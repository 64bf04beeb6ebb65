#!/usr/bin/perl

# HTTP/2 peers that misbehave, driven frame by frame by t/lib/h2raw.py
# (Python's h2 stack): rapid reset (CVE-2023-44487), CONTINUATION flood
# (CVE-2024-27316), HPACK abuse, too many streams, window abuse, DATA past
# the window, malformed frames and requests, SETTINGS and PING floods. The
# answer must be the GOAWAY or RST_STREAM RFC 9113 asks for, and after each
# one the same workers are alive, hold no leaked connection and serve a
# normal request.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::INET;
use Socket ();
use POSIX ();
use Test::More;
use Test::Meshgate;

my $py = (grep { system("$_ -c 'import h2' >/dev/null 2>&1") == 0 }
    '/usr/bin/python3', 'python3')[0];
plan(skip_all => 'no python3 with the h2 package (python3-h2)') unless $py;
my $h2raw = "$FindBin::Bin/lib/h2raw.py";

# HTTP/2 error codes (RFC 9113 §7).
my %E = (NO_ERROR => 0, PROTOCOL_ERROR => 1, INTERNAL_ERROR => 2,
    FLOW_CONTROL_ERROR => 3, STREAM_CLOSED => 5, FRAME_SIZE_ERROR => 6,
    REFUSED_STREAM => 7, CANCEL => 8, COMPRESSION_ERROR => 9,
    ENHANCE_YOUR_CALM => 11);
my %NAME = reverse %E;

my $t = Test::Meshgate->new;

# An upstream that accepts connections (the kernel does) and never reads.
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => port(8082), Listen => 64, ReuseAddr => 1, Proto => 'tcp')
    or die "silent upstream: $!\n";

# An upstream whose accept queue is full: connect() to it hangs (the
# kernel drops the SYNs).
my $full = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => port(8083), Listen => 0, ReuseAddr => 1, Proto => 'tcp')
    or die "full upstream: $!\n";
my @fillers;
for (1 .. 3) {
    my $c = IO::Socket::INET->new(Proto => 'tcp', Blocking => 0) or die;
    connect($c, Socket::pack_sockaddr_in(port(8083),
        Socket::inet_aton('127.0.0.1')));
    push @fillers, $c;
}

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "h2c"; listen = "127.0.0.1:%%PORT_8000%%"; h2c = true;
                routes = "mesh"; } );
routes = { mesh = (
    { domains = [ "direct.test" ]; prefix = "/";
      direct_response = { status = 200; body = "direct answer\n"; }; },
    { domains = [ "*" ]; prefix = "/silent"; cluster = "silent"; },
    { domains = [ "*" ]; prefix = "/hanging"; cluster = "hanging"; },
    { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = (
    { name = "backend"; response_timeout = 30.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "silent"; response_timeout = 60.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); },
    { name = "hanging"; connect_timeout = 1.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8083%%"; } ); } );
EOF
$t->run;
my $port = port(8000);
my $dir = $t->testdir;
my $nrun = 0;
my @workers;

# h2raw($scenario, @args): runs the script (60 s bound) and parses its
# lines into { out, goaway => [ error, last ], rst => { stream => error },
# status => { stream => code }, body => { stream => text }, end => {},
# closed, timeout, result => { key => value } }.
sub h2raw {
    my ($sc, @args) = @_;
    my $err = "$dir/h2raw-" . ++$nrun . '.err';
    my $pid = open(my $fh, '-|') // die "fork: $!\n";
    if ($pid == 0) {
        open STDERR, '>', $err or POSIX::_exit(127);
        { no warnings 'exec'; exec 'timeout', '60', $py, $h2raw, $sc, $port,
            @args; }
        POSIX::_exit(127);
    }
    my @lines = <$fh>;
    close $fh;
    my %r = (out => join('', @lines) . read_file($err), rst => {},
        status => {}, body => {}, end => {}, result => {}, closed => 0);
    for (@lines) {
        chomp;
        if (/^goaway error=(\d+) last=(\d+)/) { $r{goaway} ||= [ $1, $2 ] }
        elsif (/^rst stream=(\d+) error=(\d+)/) { $r{rst}{$1} = $2 }
        elsif (/^status stream=(\d+) code=(\d+)/) { $r{status}{$1} = $2 }
        elsif (/^body stream=(\d+) len=(\d+) text=(.*)$/) {
            my ($sid, $len, $b) = ($1, $2, $3);
            $r{blen}{$sid} = $len;
            $b =~ s/\\(r|n|\\)/$1 eq 'r' ? "\r" : $1 eq 'n' ? "\n" : '\\'/ge;
            $r{body}{$sid} = $b;
        }
        elsif (/^end stream=(\d+)/) { $r{end}{$1} = 1 }
        elsif (/^closed/) { $r{closed} = 1 }
        elsif (/^timeout/) { $r{timeout} = 1 }
        elsif (/^result (.*)/) {
            for my $kv (split / /, $1) {
                my ($k, $v) = split /=/, $kv, 2;
                $r{result}{$k} = $v;
            }
        }
    }
    return \%r;
}

# The connection error: the GOAWAY code, else 'closed' or 'open'.
sub conn_error {
    my ($r) = @_;
    return $NAME{$r->{goaway}[0]} // "code $r->{goaway}[0]" if $r->{goaway};
    return $r->{closed} ? 'closed' : 'open';
}

# Sockets of the workers by the port at the other end or ours:
# { client => connections on the listener, silent => to the silent
# upstream, all => every fd }. From /proc/PID/fd and /proc/net/tcp.
sub worker_sockets {
    my %ports;    # inode -> [ local port, remote port ]
    for my $l (split /\n/, read_file('/proc/net/tcp')) {
        my @f = split ' ', $l;
        next unless @f > 9 && $f[1] =~ /:([0-9A-F]{4})$/;
        my $lp = hex $1;
        my ($rp) = $f[2] =~ /:([0-9A-F]{4})$/;
        $ports{$f[9]} = [ $lp, hex $rp ];
    }
    my %n = (client => 0, silent => 0, all => 0);
    for my $pid (@workers) {
        opendir my $d, "/proc/$pid/fd" or next;
        for my $fd (grep { /^\d+$/ } readdir $d) {
            $n{all}++;
            my $l = readlink "/proc/$pid/fd/$fd" or next;
            my ($ino) = $l =~ /^socket:\[(\d+)\]/ or next;
            my $p = $ports{$ino} or next;
            $n{client}++ if $p->[0] == $port && $p->[1] != 0;
            $n{silent}++ if $p->[1] == port(8082);
        }
    }
    return \%n;
}

sub max_worker_kb {
    my ($field) = @_;
    my $max = 0;
    for my $pid ($t->worker_pids) {
        my $s = read_file("/proc/$pid/status");
        $max = $1 if $s =~ /^$field:\s+(\d+) kB/m && $1 > $max;
    }
    return $max;
}

@workers = $t->worker_pids;
is(scalar @workers, 2, 'two workers to watch');
{
    my $r = h2raw('get', '/', 'direct.test');
    is($r->{status}{1}, 200, 'h2raw.py gets an answer from meshgate')
        or diag($r->{out});
}

# still_fine($what): the workers are the ones we started, every
# connection the scenario opened is gone, and new connections are served
# (HTTP/2 and HTTP/1.1).
sub still_fine {
    my ($what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is(join(' ', $t->worker_pids), join(' ', @workers),
        "after $what: the same workers run");
    my $n;
    ok(waitfor(sub { $n = worker_sockets(); !$n->{client} && !$n->{silent} },
        10), "after $what: the workers hold no leftover connection")
        or diag("client connections $n->{client}, to the silent upstream "
            . "$n->{silent}, fds $n->{all}");
    my $r = h2raw('get', '/echo', 'b.test');
    ok(($r->{status}{1} // 0) == 200 && ($r->{body}{1} // '')
        =~ m{^GET /echo HTTP/1\.1\r\n},
        "after $what: a new HTTP/2 connection is served") or diag($r->{out});
    like(http_get('/x', host => 'b.test') // '', qr{^HTTP/1\.1 200 .*b1 GET /x\n\z}s,
        "after $what: so is HTTP/1.1");
}

# CVE-2023-44487: streams opened and reset at once, thousands of them,
# to a slow upstream so each would hold an upstream connection.
{
    my $r = h2raw('rapid_reset', 5000, '/delay/2000');
    my $e = conn_error($r);
    ok($e ne 'open' && $e ne 'NO_ERROR',
        'rapid reset: the server ends the connection with an error') or diag($r->{out});
    note("rapid reset: $e after $r->{result}{sent} streams, "
        . "$r->{result}{secs} s");
    ok($r->{closed}, 'rapid reset: and closes it') or diag($r->{out});
    ok($r->{goaway} && $r->{goaway}[1] < 2 * 5000,
        'rapid reset: GOAWAY says not every stream was taken')
        or diag($r->{out});
    still_fine('rapid reset');
}

# CVE-2024-27316: CONTINUATION frames without END_HEADERS, for ever.
{
    my $r = h2raw('continuation', 100000);
    my $e = conn_error($r);
    ok($e ne 'open', 'CONTINUATION flood: the connection is ended')
        or diag($r->{out});
    like($e, qr/^(?:ENHANCE_YOUR_CALM|PROTOCOL_ERROR|COMPRESSION_ERROR|closed)$/,
        'CONTINUATION flood: with ENHANCE_YOUR_CALM (or close)');
    cmp_ok($r->{result}{sent} // 1e9, '<', 5000,
        'CONTINUATION flood: long before 100000 frames')
        or diag($r->{out});
    cmp_ok($r->{result}{secs} // 99, '<', 5, 'CONTINUATION flood: quickly');
    still_fine('a CONTINUATION flood');
}

# HPACK
{
    my $r = h2raw('hpack_table_size');
    is(conn_error($r), 'COMPRESSION_ERROR',
        'a dynamic table size update above SETTINGS_HEADER_TABLE_SIZE: '
        . 'GOAWAY COMPRESSION_ERROR') or diag($r->{out});
    ok($r->{closed}, 'and the connection closes');

    $r = h2raw('hpack_bad_index');
    is(conn_error($r), 'COMPRESSION_ERROR',
        'an index past both tables: GOAWAY COMPRESSION_ERROR')
        or diag($r->{out});

    # 4000 references to one 4000-byte entry: 16 MB of fields from 8 kB.
    $r = h2raw('hpack_bomb', 4000);
    my $st = $r->{status}{1} // 0;
    ok($st == 431 || exists $r->{rst}{1} || $r->{goaway},
        'an HPACK bomb gets 431, RST_STREAM or GOAWAY') or diag($r->{out});
    isnt($st, 200, 'never a request');
    still_fine('HPACK abuse');
}

# Header limits: max_headers (100) and max_header_size (32768), as for
# HTTP/1.1.
{
    my $r = h2raw('many_headers', 200, 10);
    my $st = $r->{status}{1} // 0;
    ok($st == 431 || exists $r->{rst}{1},
        '200 header fields (max_headers 100): 431 or RST_STREAM')
        or diag($r->{out});

    $r = h2raw('many_headers', 40, 1000);
    $st = $r->{status}{1} // 0;
    ok($st == 431 || exists $r->{rst}{1} || $r->{goaway},
        '40 kB of header fields (max_header_size 32768): 431 or a reset')
        or diag($r->{out});

    # Within the limits: 90 fields, 16 fields of 1500 bytes (24 kB, about
    # 25 kB as HTTP/1.1 too).
    $r = h2raw('many_headers', 90, 10);
    is($r->{status}{1}, 200, '90 header fields are within max_headers')
        or diag($r->{out});
    my $h1 = "GET /echo HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n"
        . join('', map { "x-h$_: " . ('v' x 1500) . "\r\n" } 0 .. 15) . "\r\n";
    like(http($h1, timeout => 10) // '', qr{^HTTP/1\.1 200 },
        'HTTP/1.1 takes 24 kB of header fields');
    $r = h2raw('many_headers', 16, 1500);
    is($r->{status}{1}, 200,
        'HTTP/2 takes the same 24 kB (under the SETTINGS_MAX_HEADER_LIST_SIZE '
        . 'it advertises)') or diag($r->{out});
    # h2raw prints only the start of a body: its length tells whether the
    # echoed head holds all 16 fields of 1500 bytes.
    cmp_ok($r->{blen}{1} // 0, '>=', 16 * (1500 + 8),
        'and forwards them') if ($r->{status}{1} // 0) == 200;
    still_fine('oversized headers');
}

# Too many streams: SETTINGS_MAX_CONCURRENT_STREAMS is 128.
{
    # All in the first flight: the limit is not acknowledged yet.
    my $r = h2raw('streams', 200, '/delay/1000', 0);
    my $res = $r->{result};
    is($res->{late_ok}, 0, '200 streams at once: none past the 128th is served')
        or diag($r->{out});
    ok(($res->{first_ok} == 128 && $res->{rst} == 72)
        || $r->{goaway} && $r->{goaway}[0] == $E{PROTOCOL_ERROR},
        '200 streams at once: the 72 over get RST_STREAM (or the connection '
        . 'a PROTOCOL_ERROR)') or diag($r->{out});
    note("200 streams, first flight: ok $res->{ok}, refused $res->{refused}, "
        . "rst $res->{rst}, goaway $res->{goaway}");

    # After the SETTINGS: RFC 9113 §5.1.2, a stream error (§5.4.1 allows
    # ending the connection instead).
    $r = h2raw('streams', 200, '/delay/1000', 1);
    $res = $r->{result};
    is($res->{late_ok}, 0, '200 streams after SETTINGS: none past the 128th '
        . 'is served') or diag($r->{out});
    ok(($res->{first_ok} == 128 && $res->{rst} == 72)
        || $r->{goaway} && $r->{goaway}[0] == $E{PROTOCOL_ERROR},
        '200 streams after SETTINGS: REFUSED_STREAM/PROTOCOL_ERROR for the '
        . 'excess, or GOAWAY PROTOCOL_ERROR') or diag($r->{out});
    note("200 streams after SETTINGS: ok $res->{ok}, refused $res->{refused}, "
        . "rst $res->{rst}, goaway $res->{goaway}");

    $r = h2raw('streams', 128, '/delay/500', 1);
    is($r->{result}{ok}, 128, '128 concurrent slow streams are all served')
        or diag($r->{out});
    still_fine('too many streams');
}

# Flow control abuse
{
    my $r = h2raw('window_overflow', 'conn');
    is(conn_error($r), 'FLOW_CONTROL_ERROR',
        'a connection window past 2^31-1: GOAWAY FLOW_CONTROL_ERROR')
        or diag($r->{out});
    $r = h2raw('window_overflow', 'stream');
    ok(($r->{rst}{1} // -1) == $E{FLOW_CONTROL_ERROR}
        || conn_error($r) eq 'FLOW_CONTROL_ERROR',
        'a stream window past 2^31-1: RST_STREAM FLOW_CONTROL_ERROR')
        or diag($r->{out});
    $r = h2raw('window_zero');
    is(conn_error($r), 'PROTOCOL_ERROR',
        'WINDOW_UPDATE of 0 on the connection: GOAWAY PROTOCOL_ERROR')
        or diag($r->{out});

    $r = h2raw('data_beyond_window', '/silent', 20_000_000);
    ok(($r->{rst}{1} // -1) == $E{FLOW_CONTROL_ERROR}
        || conn_error($r) eq 'FLOW_CONTROL_ERROR',
        'DATA past the window (an upstream that does not read): '
        . 'FLOW_CONTROL_ERROR') or diag($r->{out});
    cmp_ok($r->{result}{sent} // 1e9, '<', 20_000_000,
        'long before the 20 MB were sent') or diag($r->{out});

    # Not abuse: RFC 9113 §6.9.2 lets a client send 65535 bytes before
    # it sees our SETTINGS. They wait while the upstream connects.
    for my $len (0, 1) {
        my $what = $len ? 'with content-length' : 'without content-length';
        $r = h2raw('early_body', '/hanging', 60000, $len);
        ok(!exists $r->{rst}{1} && !$r->{goaway},
            "60000 bytes in the first flight ($what): no reset")
            or diag($r->{out});
        is($r->{status}{1}, 504,
            "they wait for the upstream, which times out: 504 ($what)");
    }
    still_fine('window abuse');
}

# Malformed frames: the connection error RFC 9113 names for each.
{
    my %want = (
        settings_len => 'FRAME_SIZE_ERROR',        # §6.5
        settings_ack_len => 'FRAME_SIZE_ERROR',    # §6.5
        settings_stream => 'PROTOCOL_ERROR',       # §6.5
        settings_window => 'FLOW_CONTROL_ERROR',   # §6.5.2
        settings_frame_size => 'PROTOCOL_ERROR',   # §6.5.2
        settings_push => 'PROTOCOL_ERROR',         # §6.5.2
        ping_len => 'FRAME_SIZE_ERROR',            # §6.7
        ping_stream => 'PROTOCOL_ERROR',           # §6.7
        headers_stream0 => 'PROTOCOL_ERROR',       # §6.2
        data_stream0 => 'PROTOCOL_ERROR',          # §6.1
        data_idle => 'PROTOCOL_ERROR',             # §5.1
        rst_idle => 'PROTOCOL_ERROR',              # §6.4
        rst_len => 'FRAME_SIZE_ERROR',             # §6.4
        window_len => 'FRAME_SIZE_ERROR',          # §6.9
        goaway_stream => 'PROTOCOL_ERROR',         # §6.8
        continuation_alone => 'PROTOCOL_ERROR',    # §6.10
        push_promise => 'PROTOCOL_ERROR',          # §8.4
        even_stream => 'PROTOCOL_ERROR',           # §5.1.1
        frame_too_big => 'FRAME_SIZE_ERROR',       # §4.2
        no_settings => 'PROTOCOL_ERROR',           # §3.4
    );
    for my $what (sort keys %want) {
        my $r = h2raw('malformed', $what);
        is(conn_error($r), $want{$what}, "$what: GOAWAY $want{$what}")
            or diag($r->{out});
        ok($r->{closed}, "$what: then the connection closes")
            or diag($r->{out});
    }
    # §6.3: a stream error; ending the connection is allowed too.
    my $r = h2raw('malformed', 'priority_len');
    ok(($r->{rst}{1} // -1) == $E{FRAME_SIZE_ERROR}
        || conn_error($r) eq 'FRAME_SIZE_ERROR',
        'PRIORITY of the wrong size: FRAME_SIZE_ERROR') or diag($r->{out});

    $r = h2raw('malformed', 'bad_preface');
    ok($r->{closed}, 'a wrong preface: the connection closes')
        or diag($r->{out});
    unlike($r->{result}{reply} // '', qr/^HTTP\/1\.1_2/,
        'a wrong preface is never a request that succeeds');
    still_fine('malformed frames');
}

# Malformed requests (RFC 9113 §8.1.1, §8.2): a stream error each, and
# nothing of them reaches the upstream.
{
    my @base = (':method=GET', ':scheme=http', ':path=/echo',
        ':authority=b.test');
    my %bad = (
        'a connection field' => [ @base, 'connection=keep-alive' ],
        'an upper-case field name' => [ @base, 'X-Upper=1' ],
        'TE other than trailers' => [ @base, 'te=gzip' ],
        'a field value with CR LF' => [ @base, 'x-a=1%0d%0ax-injected: 1' ],
        'a field value with NUL' => [ @base, 'x-a=1%00x' ],
        'a field name with a colon' => [ @base, 'x%3aa=1' ],
        'an :authority with CR LF' => [ ':method=GET', ':scheme=http',
            ':path=/echo', ':authority=b.test%0d%0ax-injected: 1' ],
        'no :path' => [ ':method=GET', ':scheme=http', ':authority=b.test' ],
        'a pseudo field after a regular one' => [ ':method=GET',
            ':scheme=http', 'x-a=1', ':path=/echo', ':authority=b.test' ],
        'an unknown pseudo field' => [ @base, ':foo=1' ],
        'two :path fields' => [ @base, ':path=/other' ],
        'a content-length that is not a number' => [ ':method=POST',
            ':scheme=http', ':path=/echo', ':authority=b.test',
            'content-length=abc', 'body=abc' ],
        'DATA longer than content-length' => [ ':method=POST',
            ':scheme=http', ':path=/echo', ':authority=b.test',
            'content-length=3', 'body=abcdef' ],
        'DATA shorter than content-length' => [ ':method=POST',
            ':scheme=http', ':path=/echo', ':authority=b.test',
            'content-length=10', 'body=abc' ],
    );
    for my $what (sort keys %bad) {
        my $r = h2raw('fields', @{$bad{$what}});
        my $reset = exists $r->{rst}{1} && $r->{rst}{1} == $E{PROTOCOL_ERROR}
            || $r->{goaway} && $r->{goaway}[0] == $E{PROTOCOL_ERROR};
        my $st = $r->{status}{1} // 0;
        ok($reset || ($st >= 400 && $st < 500),
            "$what: RST_STREAM PROTOCOL_ERROR (or a 4xx)") or diag($r->{out});
        unlike($r->{body}{1} // '', qr/^x-injected/mi,
            "$what: no field is injected upstream");
    }

    # Host and :authority that differ (RFC 9113 §8.3.1): the request is
    # routed by :authority, so the upstream must not see another host;
    # rejecting the request is fine too.
    for my $order ([ @base, 'host=other.test' ],
        [ ':method=GET', ':scheme=http', ':path=/echo', 'host=other.test',
          ':authority=b.test' ])
    {
        my $r = h2raw('fields', @$order);
        my @hosts = ($r->{body}{1} // '') =~ /^host: *(.*?)\r$/mgi;
        ok(($r->{status}{1} // 0) != 200 || "@hosts" eq 'b.test',
            'Host other than :authority: rejected, or the upstream sees '
            . 'only the :authority (' . join(' ', grep { /host|auth/ } @$order)
            . ')') or diag($r->{body}{1} // $r->{out});
    }
    my $r = h2raw('fields', ':method=GET', ':scheme=http', ':path=/echo',
        'host=b.test');
    ok(($r->{status}{1} // 0) == 200
        && ($r->{body}{1} // '') =~ /^host: *b\.test\r$/mi,
        'Host without :authority is a valid request, forwarded as is')
        or diag($r->{out});
    still_fine('malformed requests');
}

# A stream cancelled by the client in the middle of its response; the
# connection goes on.
{
    my $r = h2raw('cancel', '/bytes/50000000');
    cmp_ok($r->{result}{cancelled_after} // 0, '>', 0,
        'a download is cancelled after its first bytes') or diag($r->{out});
    ok(($r->{status}{3} // 0) == 200
        && ($r->{body}{3} // '') =~ m{^GET /echo HTTP/1\.1\r\n},
        'the next stream on that connection is served') or diag($r->{out});
    still_fine('a cancelled stream');
}

# Floods of frames that each want an answer, never read.
{
    for my $kind (qw(settings ping)) {
        my $r = h2raw('flood', $kind, 300_000);
        my $e = conn_error($r);
        like($e, qr/^(?:ENHANCE_YOUR_CALM|closed)$/,
            "a $kind flood ends the connection") or diag($r->{out});
    }
    my $r = h2raw('settings_entries', 1000);
    ok($r->{result}{acked} || conn_error($r) eq 'ENHANCE_YOUR_CALM',
        'a SETTINGS frame with 1000 entries: taken or ENHANCE_YOUR_CALM')
        or diag($r->{out});
    my $hwm = max_worker_kb('VmHWM');
    cmp_ok($hwm, '<', 32 * 1024,
        'through all of it, no worker peaked above 32 MiB') or diag("$hwm kB");
    still_fine('floods');
}

$t->stop_and_check;
done_testing();
