#!/usr/bin/perl

# Distributed tracing: the trace context a proxied request carries upstream
# (W3C traceparent and tracestate, B3 multi and single headers), the
# Zipkin v2 spans the control process sends to a collector
# (t/backend/zipkin-collector.py), and what happens when the collector
# fails, is slow or is gone: requests are never held up, spans are
# dropped and counted. Also sampling (incoming decisions, sampling_percent
# = 0 after a reload), spans from both workers, HTTP/2 clients, the
# /config_dump section, configuration errors, and a configuration without
# tracing, which passes every trace header through untouched.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;
my $SPANS = "$dir/spans.jsonl";
my $json = JSON::PP->new;
my $COLLECTOR = "$FindBin::Bin/backend/zipkin-collector.py";

$t->plan(75);

sub conf {
    my (%o) = @_;
    my $sampling = $o{sampling} // 100;
    return <<"EOF";
gateway = { workers = 2; region = "home"; drain_timeout = 1.0;
            log_level = "info"; error_log = "%%TESTDIR%%/error.log"; };
admin = { listen = "127.0.0.1:%%PORT_8099%%"; };
tracing = {
  zipkin = "127.0.0.1:%%PORT_8411%%";
  sampling_percent = $sampling;
  service_name = "edge";
  propagate = [ "w3c", "b3", "b3-single" ];
  batch = 10;
  flush_interval = 0.2;
  timeout = 0.5;
};
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; h2c = true; } );
routes = { mesh = (
  { domains = [ "*" ]; path = "/direct";
    direct_response = { status = 200; body = "direct\\n"; }; },
  { domains = [ "*" ]; path = "/away"; redirect = { path = "/elsewhere"; }; },
  { name = "svc"; domains = [ "svc" ]; prefix = "/";
    cluster = "backend"; },
  { name = "h2svc"; domains = [ "h2svc" ]; prefix = "/"; cluster = "h2be"; }
  ); };
clusters = (
  { name = "backend";
    endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
  { name = "h2be"; protocol = "h2c";
    endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); } );
EOF
}

sub run_collector {
    my $pid = $t->run_daemon('/usr/bin/python3', $COLLECTOR, port(8411),
        $SPANS, '--watch-parent');
    waitforsocket('127.0.0.1:' . port(8411))
        or die "the collector did not start:\n" . $t->daemon_log($pid);
    return $pid;
}

sub collector_mode {
    my ($query) = @_;
    my $r = parse_response(http_get("/mode?$query", port => port(8411)));
    return $r->{status} && $r->{status} == 200;
}

$t->write_conf(conf());
$t->run_backend(port => 8081, name => 'b1');
$t->run_daemon('/usr/bin/python3', "$FindBin::Bin/backend/h2-backend.py",
    '--port', port(8082), '--h2c', '--watch-parent');
waitforsocket('127.0.0.1:' . port(8082)) or die "h2-backend did not start\n";
my $collector = run_collector();
$t->run;
my $BPORT = port(8081);

# Every span the collector accepted so far; batches that are not a JSON
# array of spans are kept in @bad.
my @bad;
sub spans {
    my @s;
    @bad = ();
    for my $l (split /\n/, read_file($SPANS)) {
        my $b = eval { $json->decode($l) };
        if (ref $b eq 'ARRAY') {
            push @s, @$b;
        } else {
            push @bad, $l;
        }
    }
    return @s;
}

# The spans for which |match| is true, once there are |n| (10 s at most).
sub wait_spans {
    my ($n, $match) = @_;
    my @s;
    waitfor(sub { @s = grep { $match->($_) } spans(); @s >= $n }, 10);
    return @s;
}

sub trace_spans {
    my ($tid, $n) = @_;
    return wait_spans($n, sub { $_[0]{traceId} eq $tid });
}

sub by_kind {
    my ($kind, @s) = @_;
    my ($span) = grep { ($_->{kind} // '') eq $kind } @s;
    return $span || {};
}

# GET |path| on the mesh listener, host svc (the cluster route); returns
# the response and the request head the backend saw (/echo answers with
# it) as { lower-case name => [ values ] }.
sub echo {
    my ($path, @headers) = @_;
    my $r = parse_response(http_get($path, host => 'svc',
        headers => \@headers));
    my %h;
    my ($head) = split /\r\n\r\n/, $r->{body} // '', 2;
    for my $l (split /\r\n/, $head // '') {
        my ($k, $v) = $l =~ /^([^: ]+):\s*(.*)$/ or next;
        push @{$h{lc $k}}, $v;
    }
    return ($r, \%h);
}

# The only value of header |k|, or undef when absent or repeated.
sub one {
    my ($h, $k) = @_;
    return $h->{$k} && @{$h->{$k}} == 1 ? $h->{$k}[0] : undef;
}

sub prom {
    my ($name) = @_;
    my $r = parse_response(http_get('/stats/prometheus', port => port(8099)));
    return ($r->{body} // '') =~ /^meshgate_\Q$name\E(?:\{[^}]*\})? (\d+)/m
        ? $1 : undef;
}

my $HEX32 = qr/[0-9a-f]{32}/;
my $HEX16 = qr/[0-9a-f]{16}/;

###########################################################################
# A new trace: every format goes upstream, two spans come out.

my $t0 = time;
my ($r, $h) = echo('/echo');
my $t1 = time;
is($r->{status}, 200, 'a proxied request without trace headers');
my ($tid, $cid) = (one($h, 'traceparent') // '') =~ /^00-($HEX32)-($HEX16)-01$/;
ok($tid, 'the backend got a new sampled traceparent')
    or diag(explain($h));
$tid //= 'none';
$cid //= 'none';
my ($sid) = (one($h, 'b3') // '') =~ /^\Q$tid\E-\Q$cid\E-1-($HEX16)$/;
ok($sid, 'b3 has the same trace and span id, sampled, and a parent')
    or diag(one($h, 'b3'));
$sid //= 'none';
is_deeply([ map { one($h, $_) } qw(x-b3-traceid x-b3-spanid
    x-b3-parentspanid x-b3-sampled) ], [ $tid, $cid, $sid, '1' ],
    'the X-B3 headers say the same');
like(one($h, 'x-request-id') // '', qr/^$HEX32$/,
    'x-request-id is generated when absent');
isnt($cid, $sid, 'the CLIENT span id is not the SERVER span id');

my @s = trace_spans($tid, 2);
is(scalar @s, 2, 'the collector got two spans of the trace');
my $srv = by_kind('SERVER', @s);
my $cli = by_kind('CLIENT', @s);
is($srv->{id}, $sid, 'the SERVER span is the parent sent upstream');
ok(!exists $srv->{parentId}, 'a new trace: the SERVER span has no parent');
is($cli->{id}, $cid, 'the CLIENT span id is the parent id the backend saw');
is($cli->{parentId}, $sid, 'the CLIENT span is a child of the SERVER span');
is($srv->{name}, 'get svc', 'the SERVER span is named method and route');
is_deeply($srv->{localEndpoint},
    { serviceName => 'edge', ipv4 => '127.0.0.1', port => port(8000) },
    'the SERVER span: local endpoint');
is($srv->{remoteEndpoint}{ipv4}, '127.0.0.1',
    'the SERVER span: the client address');
is_deeply($srv->{tags}, { 'http.method' => 'GET', 'http.path' => '/echo',
    'http.status_code' => '200', 'http.host' => 'svc',
    request_id => one($h, 'x-request-id'), listener => 'mesh',
    route => 'svc', region => 'home' }, 'the SERVER span: tags');
is_deeply($cli->{remoteEndpoint},
    { serviceName => 'backend', ipv4 => '127.0.0.1', port => $BPORT },
    'the CLIENT span: the endpoint');
is_deeply($cli->{tags}, { cluster => 'backend',
    endpoint => "127.0.0.1:$BPORT", region => 'home', priority => '0',
    retries => '0', 'http.status_code' => '200' }, 'the CLIENT span: tags');
my $ok = $srv->{timestamp} && $cli->{timestamp}
    && $srv->{timestamp} >= int($t0 * 1e6) - 50000
    && $srv->{timestamp} + $srv->{duration} <= int($t1 * 1e6) + 50000
    && $srv->{duration} >= 1 && $cli->{duration} >= 1
    && $cli->{timestamp} >= $srv->{timestamp}
    && $cli->{timestamp} + $cli->{duration}
        <= $srv->{timestamp} + $srv->{duration};
ok($ok, 'timestamps are the request times, the CLIENT span inside the '
    . 'SERVER span') or diag(explain([ $t0, $t1, $srv, $cli ]));

###########################################################################
# Incoming contexts are continued.

my $in_tid = '0af7651916cd43dd8448eb211c80319c';
my $in_pid = 'b7ad6b7169203331';
($r, $h) = echo('/echo', "traceparent: 00-$in_tid-$in_pid-01",
    'tracestate: congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
my ($up_tid, $up_pid) = (one($h, 'traceparent') // '')
    =~ /^00-($HEX32)-($HEX16)-01$/;
is($up_tid, $in_tid, 'traceparent: the same trace id goes upstream');
ok($up_pid && $up_pid ne $in_pid, 'traceparent: with our span as parent');
is_deeply($h->{tracestate}, [ 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7' ],
    'tracestate passes unchanged');
@s = trace_spans($in_tid, 2);
is(by_kind('SERVER', @s)->{parentId}, $in_pid,
    'the SERVER span is a child of the incoming span');
is(by_kind('CLIENT', @s)->{id}, $up_pid // 'none',
    'the CLIENT span is the parent the backend saw');

# B3 multi with a 64-bit trace id.
my $b3_tid = '463ac35c9f6413ad';
my $b3_sid = 'a2fb4a1d1a96d312';
($r, $h) = echo('/echo', "X-B3-TraceId: $b3_tid", "X-B3-SpanId: $b3_sid",
    'X-B3-ParentSpanId: 0020000000000001', 'X-B3-Sampled: 1');
is(one($h, 'x-b3-traceid'), $b3_tid, 'B3 multi: the same 64-bit trace id');
($up_pid) = (one($h, 'traceparent') // '')
    =~ /^00-0{16}\Q$b3_tid\E-($HEX16)-01$/;
ok($up_pid && $up_pid eq (one($h, 'x-b3-spanid') // ''),
    'B3 multi: traceparent carries it padded, with our CLIENT span')
    or diag(explain($h));
@s = trace_spans($b3_tid, 2);
is(by_kind('SERVER', @s)->{parentId}, $b3_sid,
    'B3 multi: the SERVER span is a child of X-B3-SpanId');
is(by_kind('CLIENT', @s)->{id}, $up_pid // 'none',
    'B3 multi: the spans keep the 16-digit trace id');

# B3 single, 128-bit, with the caller's parent.
my $s_tid = '80f198ee56343ba864fe8b2a57d3eff7';
my $s_sid = 'e457b5a2e4d86bd1';
($r, $h) = echo('/echo', "b3: $s_tid-$s_sid-1-05e3ac9a4f6e3b90");
like(one($h, 'traceparent') // '', qr/^00-\Q$s_tid\E-$HEX16-01$/,
    'b3: the same trace id goes upstream');
like(one($h, 'b3') // '', qr/^\Q$s_tid\E-$HEX16-1-$HEX16$/,
    'b3: only our b3 header goes upstream');
@s = trace_spans($s_tid, 2);
is(by_kind('SERVER', @s)->{parentId}, $s_sid,
    'b3: the SERVER span is a child of the b3 span');

# An invalid traceparent (upper case) is ignored: B3 comes next.
($r, $h) = echo('/echo',
    'traceparent: 00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01',
    "X-B3-TraceId: $s_tid", "X-B3-SpanId: $s_sid");
like(one($h, 'traceparent') // '', qr/^00-\Q$s_tid\E-$HEX16-01$/,
    'an invalid traceparent is ignored for the valid X-B3 headers');

# Nothing valid: a new trace, and nothing of the bad headers goes on.
($r, $h) = echo('/echo', 'traceparent: 00-' . ('0' x 32) . "-$in_pid-01",
    'b3: nonsense', 'X-B3-TraceId: xyz');
my ($new_tid) = (one($h, 'traceparent') // '') =~ /^00-($HEX32)-$HEX16-01$/;
ok($new_tid && $new_tid ne '0' x 32
    && (one($h, 'b3') // '') =~ /^\Q$new_tid\E-/
    && (one($h, 'x-b3-traceid') // '') eq $new_tid,
    'invalid trace headers: a new trace, sampled') or diag(explain($h));

# Sampling decisions that say no are kept, and nothing is recorded.
my $ns_tid = '11111111111111111111111111111111';
($r, $h) = echo('/echo', "traceparent: 00-$ns_tid-$in_pid-00");
ok((one($h, 'traceparent') // '') =~ /^00-\Q$ns_tid\E-$HEX16-00$/
    && (one($h, 'x-b3-sampled') // '') eq '0'
    && (one($h, 'b3') // '') =~ /-0-$HEX16$/,
    'traceparent flags 00: not sampled, still propagated')
    or diag(explain($h));
($r, $h) = echo('/echo', 'b3: 0');
my ($b3_0_tid) = (one($h, 'traceparent') // '') =~ /^00-($HEX32)-$HEX16-00$/;
ok($b3_0_tid, '"b3: 0": a new trace, not sampled');
$b3_0_tid //= 'none';

# The B3 debug flag: sampled, and said so.
my $d_tid = '22222222222222222222222222222222';
($r, $h) = echo('/echo', "X-B3-TraceId: $d_tid", "X-B3-SpanId: $s_sid",
    'X-B3-Flags: 1');
ok((one($h, 'x-b3-flags') // '') eq '1' && !$h->{'x-b3-sampled'}
    && (one($h, 'b3') // '') =~ /^\Q$d_tid\E-$HEX16-d-$HEX16$/,
    'X-B3-Flags: 1 goes upstream as debug') or diag(explain($h));
@s = trace_spans($d_tid, 2);
ok(@s == 2 && !grep({ !$_->{debug} } @s), 'debug spans say so');

# x-request-id from the client is kept.
($r, $h) = echo('/echo', 'X-Request-Id: req-trace-1');
is_deeply($h->{'x-request-id'}, [ 'req-trace-1' ],
    'x-request-id is kept when present');
is(scalar wait_spans(1, sub { ($_[0]{tags}{request_id} // '')
    eq 'req-trace-1' && $_[0]{kind} eq 'SERVER' }), 1,
    'the SERVER span has the request id');

# Requests answered without an upstream: a SERVER span only.
http_get('/direct', headers => [ 'X-Request-Id: direct-1' ]);
http_get('/away', headers => [ 'X-Request-Id: away-1' ]);
http_get('/nothing', host => 'nowhere', headers => [ 'X-Request-Id: nf-1' ]);
# A sampled request after them: once its spans are in, theirs are too.
($r, $h) = echo('/echo', 'X-Request-Id: barrier-1');
wait_spans(1, sub { ($_[0]{tags}{request_id} // '') eq 'barrier-1' });
my %by_rid;
for my $sp (spans()) {
    push @{$by_rid{$sp->{tags}{request_id} // ''}}, $sp;
}
is_deeply([ map { [ map { $_->{kind} . ' ' . $_->{tags}{'http.status_code'} }
                    @{$by_rid{$_} || []} ] } qw(direct-1 away-1 nf-1) ],
    [ [ 'SERVER 200' ], [ 'SERVER 301' ], [ 'SERVER 404' ] ],
    'a direct response, a redirect and a 404 get a SERVER span only');
my @unsampled = grep { $_->{traceId} eq $ns_tid || $_->{traceId} eq $b3_0_tid
} spans();
is(scalar @unsampled, 0, 'requests that are not sampled send no span');

# HTTP/2 from the client.
my $p0 = port(8000);
open(my $curl, '-|', 'curl', '-s', '--http2-prior-knowledge',
    '--connect-to', "svc:$p0:127.0.0.1:$p0",
    '-H', "traceparent: 00-$in_tid-$in_pid-01", '-H', 'X-Request-Id: h2-1',
    "http://svc:$p0/echo") or die "curl: $!";
my $h2 = do { local $/; <$curl> } // '';
close $curl;
like($h2, qr/^traceparent: 00-\Q$in_tid\E-$HEX16-01\r$/m,
    'HTTP/2: the trace context goes upstream') or diag($h2);
is(scalar wait_spans(1, sub { ($_[0]{tags}{request_id} // '') eq 'h2-1'
    && ($_[0]{parentId} // '') eq $in_pid }), 1,
    'HTTP/2: the SERVER span continues the trace');

# An HTTP/2 upstream gets the same headers, in lower case.
$r = parse_response(http_get('/', host => 'h2svc',
    headers => [ "traceparent: 00-$in_tid-$in_pid-01", 'b3: 0' ]));
my $up = eval { $json->decode($r->{body}) } || {};
my %uh;
push @{$uh{$_->[0]}}, $_->[1] for @{$up->{headers} || []};
ok(@{$uh{traceparent} || []} == 1
    && $uh{traceparent}[0] =~ /^00-\Q$in_tid\E-$HEX16-01$/
    && @{$uh{b3} || []} == 1 && $uh{b3}[0] =~ /^\Q$in_tid\E-/
    && ($uh{'x-b3-traceid'}[0] // '') eq $in_tid,
    'HTTP/2 upstream: the trace headers go as fields of the stream')
    or diag($r->{body});

###########################################################################
# Parallel requests over both workers: every span arrives.

my ($clients, $per) = (10, 10);
my %kids;
pipe(my $go_r, my $go_w) or die "pipe: $!";
for my $k (1 .. $clients) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        # Start together: wait until the parent closes the pipe.
        close $go_w;
        sysread($go_r, my $x, 1);
        my $good = 0;
        for my $n (1 .. $per) {
            my $raw = http_get("/par/$k-$n", host => 'svc', timeout => 5);
            $good++ if defined $raw && $raw =~ /^HTTP\/1\.1 200 /;
        }
        POSIX::_exit($good == $per ? 0 : 1);
    }
    $kids{$pid} = 1;
}
close $go_r;
close $go_w;
my $failed = 0;
for my $pid (keys %kids) {
    waitpid($pid, 0);
    $failed++ if $?;
}
is($failed, 0, 'parallel requests are all answered');
# CLIENT spans carry no path: they are matched by their parent.
my (%par_srv, @par_cli);
waitfor(sub {
    my @all = spans();
    %par_srv = map { $_->{id} => $_ } grep { $_->{kind} eq 'SERVER'
        && ($_->{tags}{'http.path'} // '') =~ m{^/par/} } @all;
    @par_cli = grep { $_->{kind} eq 'CLIENT' && $par_srv{$_->{parentId} // ''}
    } @all;
    keys %par_srv == $clients * $per && @par_cli == $clients * $per;
}, 10);
is(scalar keys %par_srv, $clients * $per, 'a SERVER span for each request');
is(scalar @par_cli, $clients * $per, 'a CLIENT span for each request');
# A generated request id starts with its worker's random seed.
my %seeds = map { substr($_->{tags}{request_id}, 0, 16) => 1 }
    values %par_srv;
ok(keys %seeds >= 2, 'the spans came from both workers')
    or diag(join ' ', keys %seeds);
is(scalar @bad, 0, 'every batch was a JSON array') or diag($bad[0]);
my $max = 0;
for my $l (split /\n/, read_file($SPANS)) {
    my $b = eval { $json->decode($l) } || [];
    $max = @$b if @$b > $max;
}
ok($max > 1 && $max <= 11, "batches hold up to batch + 1 spans ($max)");

my $sampled = prom('tracing_spans_sampled_total');
ok(waitfor(sub { (prom('tracing_spans_sent_total') // -1) == $sampled }, 5),
    "every sampled span was sent ($sampled)");
is(prom('tracing_spans_dropped_total'), 0, 'none was dropped');

###########################################################################
# /config_dump

my $dump = eval { $json->decode(parse_response(http_get('/config_dump',
    port => port(8099)))->{body}) } || {};
my $tr = $dump->{tracing} || {};
delete $tr->{file};
is_deeply($tr, { zipkin => '127.0.0.1:' . port(8411),
    sampling_percent => 100, service_name => 'edge',
    propagate => [ 'w3c', 'b3', 'b3-single' ], batch => 10,
    flush_interval => 0.2, timeout => 0.5, line => 4 },
    '/config_dump shows the tracing section');

###########################################################################
# A failing, slow or absent collector: requests go on, spans are dropped.

sub burst {
    my ($tag, $n) = @_;
    my ($good, $slowest) = (0, 0);
    for my $i (1 .. $n) {
        my $s = time;
        my $raw = http_get("/$tag/$i", host => 'svc');
        my $took = time - $s;
        $slowest = $took if $took > $slowest;
        $good++ if defined $raw && $raw =~ /^HTTP\/1\.1 200 /;
    }
    return ($good, $slowest);
}

my $dropped = prom('tracing_spans_dropped_total') // 0;
my $log_at = $t->log_offset;
ok(collector_mode('status=500'), 'the collector now answers 500');
my ($good) = burst('fail500', 20);
is($good, 20, 'requests succeed while the collector answers 500');
ok(waitfor(sub { (prom('tracing_spans_dropped_total') // 0) >= $dropped + 40
    }, 10), 'spans refused by the collector are counted as dropped');
like($t->waitforlog(qr/tracing: \d+ spans dropped: the collector answered 500/,
    since => $log_at), qr/500/, 'the refusal is logged');

$dropped = prom('tracing_spans_dropped_total') // 0;
collector_mode('status=202&delay=2');
my $slowest;
($good, $slowest) = burst('slow', 20);
is($good, 20, 'requests succeed while the collector is slow');
ok($slowest < 1, sprintf('a slow collector holds no request up (%.3f s)',
    $slowest));
ok(waitfor(sub { (prom('tracing_spans_dropped_total') // 0) > $dropped },
    10), 'spans of a POST that timed out are counted as dropped');
collector_mode('status=202&delay=0');

$t->stop_daemons($collector);
$dropped = prom('tracing_spans_dropped_total') // 0;
($good) = burst('down', 20);
is($good, 20, 'requests succeed while the collector is down');
ok(waitfor(sub { (prom('tracing_spans_dropped_total') // 0)
    >= $dropped + 40 }, 10),
    'meshgate_tracing_spans_dropped_total grows while it is down');
# Failures of a few seconds: one line, not one per batch.
my $lines = () = $t->log(since => $log_at) =~ /spans dropped/g;
ok($lines >= 1 && $lines <= 3,
    "failures are not logged for every batch ($lines lines)");

###########################################################################
# sampling_percent = 0 after a reload: no new trace is sampled, but an
# incoming decision still is honoured.

$collector = run_collector();
$t->write_conf(conf(sampling => 0));
is($t->reload, 1, 'reload with sampling_percent = 0');
# The old workers may still take a connection until they heard of the
# drain: wait until they are gone.
waitfor(sub {
    my @p = $t->worker_pids;
    return @p && !grep { Test::Meshgate::proc_title($_) !~ /\(gen 2\)/ } @p;
}, 10);
($r, $h) = echo('/echo');
my ($zero_tid) = (one($h, 'traceparent') // '') =~ /^00-($HEX32)-$HEX16-00$/;
ok($zero_tid, 'sampling 0: new traces are propagated as not sampled');
$zero_tid //= 'none';
my $yes_tid = '33333333333333333333333333333333';
($r, $h) = echo('/echo', "traceparent: 00-$yes_tid-$in_pid-01");
is(scalar trace_spans($yes_tid, 2), 2,
    'sampling 0: an incoming sampled trace is still recorded');
is(scalar grep({ $_->{traceId} eq $zero_tid } spans()), 0,
    'sampling 0: no span for a new trace');

###########################################################################
# Configuration errors (meshgate -t).

sub check_conf {
    my ($text) = @_;
    my $path = $t->write_file('bad.conf', $text);
    my $res = $t->run_binary('-t', '-c', $path);
    return ($res->{status}, $res->{stderr} . $res->{stdout});
}

my $base = <<'EOF';
listeners = ( { name = "mesh"; listen = "127.0.0.1:18000"; routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "c"; } ); };
clusters = ( { name = "c";
               endpoints = ( { address = "127.0.0.1:18081"; } ); } );
EOF
my ($st, $err) = check_conf(<<'EOF' . $base);
tracing = {
  zipkin = "zipkin.example:9411";
  sampling_percent = 200.0;
  propagate = [ "w3c",
                "jaeger" ];
  batch = 0;
};
EOF
is($st, 1, 'bad tracing values fail -t');
like($err, qr/bad\.conf:2: bad zipkin address "zipkin\.example:9411"/,
    'a host name as zipkin address: file:line');
like($err, qr/bad\.conf:3: key "sampling_percent" must be between 0 and 100/,
    'sampling_percent 200: file:line');
like($err, qr/bad\.conf:5: unknown propagate format "jaeger"/,
    'an unknown propagate format: file:line');
like($err, qr/bad\.conf:6: key "batch" must be between 1 and 1000/,
    'batch 0: file:line');
($st, $err) = check_conf(<<'EOF' . $base);
tracing = { zipkin = "127.0.0.1"; };
EOF
like($err, qr/bad\.conf:1: bad zipkin address "127\.0\.0\.1": missing port/,
    'a zipkin address without a port: file:line');

###########################################################################
# Without tracing, trace headers pass untouched and nothing is added.

my $t2 = Test::Meshgate->new;
$t2->write_conf(<<'EOF');
gateway = { workers = 1; drain_timeout = 1.0; };
admin = { listen = "127.0.0.1:%%PORT_8199%%"; };
listeners = ( { name = "plain"; listen = "127.0.0.1:%%PORT_8100%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "be"; } ); };
clusters = ( { name = "be";
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$t2->run;
my @sent = ('traceparent: 00-0AF7651916CD43DD8448EB211C80319C-b7ad-01',
    'tracestate: a=b', 'b3: whatever', 'X-B3-TraceId: 1', 'X-B3-SpanId: 2',
    'X-B3-ParentSpanId: 3', 'X-B3-Sampled: 1', 'X-B3-Flags: 0');
$r = parse_response(http_get('/echo', port => port(8100), headers => \@sent));
my @seen = grep { /^(?:traceparent|tracestate|b3|x-b3-)/i }
    split /\r\n/, $r->{body} // '';
is_deeply(\@seen, \@sent, 'without tracing, trace headers pass untouched');
my $dump2 = eval { $json->decode(parse_response(http_get('/config_dump',
    port => port(8199)))->{body}) } || {};
ok(exists $dump2->{tracing} && !defined $dump2->{tracing},
    '/config_dump says tracing is off');
$t2->stop_and_check;
