#!/usr/bin/perl

# Metrics: /stats/prometheus and /stats on the admin listener.
#
# Two workers, traffic spread over both: counters are exact sums over the
# workers (requests by listener, route and status class, upstream
# responses by priority level and endpoint, attempts, connections, bytes);
# they survive reloads (unchanged and changed configurations, routes and
# clusters moved around) and a killed worker, and never go backwards;
# active gauges rise under load and fall back to 0, also after a worker
# died holding a request; latency histograms put a delayed backend's
# requests in the right buckets, with _count, _sum and the p50/p90
# estimates where the measured latencies say; retries, connect failures,
# resets, timeouts, circuit breaker overflows, outlier ejections, health
# check transitions and the spill-over of attempts to another region's
# front proxy are counted; so are HTTP/2 clients (streams on one
# connection) and h2c upstreams. The page passes `promtool check metrics`,
# every documented family is there with its type and labels, and a
# real Prometheus server scrapes it (up = 1, the sums it stores equal the
# page's, no counter reset across the reloads and the crash). With
# `gateway.metrics = false` nothing is counted.
#
# The admin listener's refusal of a non-loopback address without
# allow_remote is in t/10config-errors.t (and acceptance with it in
# t/unit/test_conf.c); it is not repeated here.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;
use Test::Metrics;

my $T0 = time;
my $t = Test::Meshgate->new;
my $dir = $t->testdir;
my $CI = ($ENV{CI} // '') eq 'true';

my $prometheus_bin = find_tool('prometheus', 'TEST_MESHGATE_PROMETHEUS');
my $promtool = find_tool('promtool', 'TEST_MESHGATE_PROMTOOL');

my $HC = 'interval = 0.2; timeout = 0.15; healthy_threshold = 1; '
    . 'unhealthy_threshold = 1;';

# The configuration; |changed| moves a new route and a new cluster in
# front of the others (so every index shifts) and changes a timeout.
sub conf {
    my (%o) = @_;
    my ($route0, $cluster0, $tmo) = ('', '', '0.3');
    if ($o{changed}) {
        $route0 = '  { name = "extra"; domains = [ "extra" ]; prefix = "/";'
            . " cluster = \"extra\"; },\n";
        $cluster0 = '  { name = "extra"; endpoints = ( { address ='
            . " \"127.0.0.1:%%PORT_8081%%\"; } ); },\n";
        $tmo = '0.4';
    }
    my $metrics = $o{metrics} // '';
    return <<"EOF";
gateway = { workers = 2; region = "home"; zone = "z1"; drain_timeout = 1.0;
            log_level = "info"; $metrics };
admin = { listen = "127.0.0.1:%%PORT_8099%%"; };
regions = ( { name = "far"; front_proxy = "127.0.0.1:%%PORT_8086%%";
              protocol = "http/1.1"; } );
listeners = (
  { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh";
    access_log = "%%TESTDIR%%/access.log"; },
  { name = "edge"; listen = "127.0.0.1:%%PORT_8001%%"; routes = "mesh"; },
  { name = "h2"; listen = "127.0.0.1:%%PORT_8002%%"; routes = "mesh";
    h2c = true; } );
routes = { mesh = (
$route0  { name = "app"; domains = [ "app" ]; prefix = "/"; cluster = "app"; },
  { name = "timed"; domains = [ "timed" ]; prefix = "/"; cluster = "timed"; },
  { name = "flaky"; domains = [ "flaky" ]; prefix = "/"; cluster = "flaky"; },
  { name = "cb"; domains = [ "cb" ]; prefix = "/"; cluster = "cb"; },
  { name = "tmo"; domains = [ "tmo" ]; prefix = "/"; cluster = "tmo"; },
  { name = "ej"; domains = [ "ej" ]; prefix = "/"; cluster = "ej"; },
  { name = "spill"; domains = [ "spill" ]; prefix = "/"; cluster = "spill"; },
  { name = "h2up"; domains = [ "h2up" ]; prefix = "/"; cluster = "h2up"; },
  { domains = [ "api.example.com" ]; prefix = "/users"; cluster = "app"; },
  { name = "direct"; domains = [ "direct" ]; prefix = "/";
    direct_response = { status = 204; }; } ); };
clusters = (
$cluster0  { name = "app"; endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
  { name = "timed"; endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); },
  { name = "flaky"; endpoints = ( { address = "127.0.0.1:%%PORT_8089%%"; },
                                  { address = "127.0.0.1:%%PORT_8081%%"; } ); },
  { name = "cb"; circuit_breakers = { max_requests = 1; };
    endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); },
  { name = "tmo"; response_timeout = $tmo;
    endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); },
  { name = "ej"; outlier = { consecutive_5xx = 2; };
    endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); },
  { name = "h2up"; protocol = "h2c";
    endpoints = ( { address = "127.0.0.1:%%PORT_8084%%"; } ); },
  { name = "spill"; out_of_zone = [ "far" ];
    health_check = { path = "/status/503"; $HC };
    endpoints = ( { address = "127.0.0.1:%%PORT_8083%%"; } ); } );
EOF
}

$t->run_backend(port => 8081, name => 'b1');
$t->run_backend(port => 8082, name => 'b2');
$t->run_backend(port => 8083, name => 'local');
$t->run_backend(port => 8086, name => 'far');
my $h2py = Test::Meshgate::h2_python();
$t->run_h2_backend(port => 8084, h2c => 1, name => 'h2') if $h2py;
my $nghttp = find_tool('nghttp');
$t->write_conf(conf());
$t->run;

my $ADMIN = port(8099);
my ($B1, $B2, $LOCAL, $FAR, $DEAD, $H2) = map { '127.0.0.1:' . port($_) }
    8081, 8082, 8083, 8086, 8089, 8084;

# A real Prometheus scraping the admin listener every second, from the
# start, so that it sees the counters before and after the reloads and the
# worker crash.
my $prom;
if ($prometheus_bin) {
    $prom = eval { Test::Metrics::Prometheus->start($t, port => 8095,
        targets => [ "127.0.0.1:$ADMIN" ]) };
    diag("prometheus: $@") unless $prom;
}

###########################################################################
# Helpers

# One GET with "Connection: close"; what the client saw.
sub req {
    my ($host, $path, %o) = @_;
    my $q = "GET $path HTTP/1.1\r\nHost: $host\r\nConnection: close\r\n\r\n";
    my $t0 = time;
    my $raw = http($q, port => $o{port} // port(8000),
        timeout => $o{timeout} // 5, quiet => 1);
    my $el = time - $t0;
    my $r = parse_response($raw // '', eof => 1);
    return { status => $r->{status} // 0, sent => length $q,
        got => length($raw // ''), time => $el,
        backend => $r->{headers}{'x-backend'} // '',
        error => $r->{headers}{'x-meshgate-error'} // '' };
}

# start_clients(TAG, N, CODE): N processes run CODE->(k) at the same
# moment; wait_clients(HANDLE) returns every result they returned (the
# hashes of req()), once all have exited.
sub start_clients {
    my ($tag, $n, $code) = @_;
    pipe(my $go_r, my $go_w) or die "pipe: $!";
    my @pids;
    for my $k (1 .. $n) {
        my $pid = fork();
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            close $go_w;
            sysread($go_r, my $x, 1);
            my @res = eval { $code->($k) };
            if (open my $fh, '>', "$dir/clients-$tag-$k.json") {
                print $fh JSON::PP::encode_json(\@res);
                close $fh;
            }
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    close $go_r;
    close $go_w;
    return { tag => $tag, n => $n, pids => { map { $_ => 1 } @pids } };
}

sub wait_clients {
    my ($h) = @_;
    my $kids = $h->{pids};
    waitfor(sub {
        for my $pid (keys %$kids) {
            delete $kids->{$pid} if waitpid($pid, WNOHANG) == $pid;
        }
        return !%$kids;
    }, 30);
    if (%$kids) {
        diag("clients $h->{tag}: " . scalar(keys %$kids) . " still running,"
            . " killing them");
        kill 'KILL', keys %$kids;
        waitpid($_, 0) for keys %$kids;
    }
    my @all;
    for my $k (1 .. $h->{n}) {
        my $res = eval { JSON::PP::decode_json(read_file(
            "$dir/clients-$h->{tag}-$k.json")) } || [];
        push @all, @$res;
    }
    return @all;
}

sub scrape_ok {
    my $m = scrape($ADMIN);
    return $m;
}

# Between parts: once meshgate logged a crash or a sanitizer report, the
# rest would only time out; end here (the teardown test fails and shows
# the log).
sub checkpoint {
    my ($part) = @_;
    my @bad = $t->problems;
    return unless @bad || !$t->is_running;
    diag("stopping before $part: meshgate crashed or is gone");
    $t->stop_and_check;
    done_testing();
    exit;
}

# Waits until CODE->(scrape) is true (5 s at most); returns the last
# scrape either way.
sub scrape_until {
    my ($code, $timeout) = @_;
    my $m;
    waitfor(sub { $m = scrape($ADMIN); $code->($m) }, $timeout // 5);
    return $m;
}

# The change of a sum of series between two scrapes.
sub delta {
    my ($m0, $m1, $name, %f) = @_;
    return $m1->sum($name, %f) - $m0->sum($name, %f);
}

# The change of each bucket of a histogram between two scrapes, as a
# histogram() result.
sub hdelta {
    my ($m0, $m1, $fam, %f) = @_;
    my $h0 = $m0->histogram($fam, %f);
    my $h1 = $m1->histogram($fam, %f);
    my %b0 = map { $_->[0] => $_->[1] } @{$h0->{buckets}};
    return { buckets => [ map { [ $_->[0], $_->[1] - ($b0{$_->[0]} // 0) ] }
        @{$h1->{buckets}} ], sum => $h1->{sum} - $h0->{sum},
        count => $h1->{count} - $h0->{count} };
}

# Counter samples (histograms included) of |m0| that are lower or gone
# in |m1|.
sub went_down {
    my ($m0, $m1) = @_;
    my ($a, $b) = ($m0->flat(type => 'counter'), $m1->flat(type => 'counter'));
    my @bad;
    for my $k (sort keys %$a) {
        push @bad, "$k: $a->{$k} -> " . ($b->{$k} // 'gone')
            if !defined $b->{$k} || $b->{$k} < $a->{$k};
    }
    return @bad;
}

sub count_of {
    my ($res, $code) = @_;
    return scalar grep { $code->($_) } @$res;
}

# The smallest histogram bound at or above |x| seconds.
my @BOUNDS;
for my $e (-5 .. 0) {
    push @BOUNDS, map { $_ * 10**$e } 1 .. 9;
}
push @BOUNDS, 10, 20, 30, 60;
sub bound_above {
    my ($x) = @_;
    for my $b (@BOUNDS) { return $b if $b >= $x - 1e-12 }
    return 9**9**9;
}

sub proxy_workers {
    my $gen = $t->generation;
    return grep { Test::Meshgate::proc_title($_)
        =~ /worker \d+ \(gen \Q$gen\E\)/ } $t->worker_pids;
}

###########################################################################
# The page itself

my $m0 = scrape_ok();
is($m0->{status}, 200, '/stats/prometheus answers 200');
is($m0->{headers}{'content-type'} // '',
    'text/plain; version=0.0.4; charset=utf-8',
    '/stats/prometheus: the text format 0.0.4 content type');
is_deeply($m0->{errors}, [], '/stats/prometheus: the page parses cleanly')
    or diag(explain [ @{$m0->{errors}}[0 .. 9] ]);

my ($si) = eval { JSON::PP::decode_json(parse_response(http_get(
    '/server_info', port => $ADMIN), eof => 1)->{body}) };
my @info = $m0->series('meshgate_info');
is(scalar @info, 1, 'meshgate_info: one series');
is_deeply($info[0] && { %{$info[0]{labels}}, value => $info[0]{value} },
    { version => $si->{version} // '?', region => 'home', zone => 'z1',
      value => 1 },
    'meshgate_info{version,region,zone} 1');
is($m0->value('meshgate_workers'), 2, 'meshgate_workers 2');
is($m0->value('meshgate_generation'), 1, 'meshgate_generation 1');
my $st = $m0->value('meshgate_start_time_seconds') // 0;
ok($st >= $T0 - 2 && $st <= time + 1,
    'meshgate_start_time_seconds is when the master started')
    or diag("start $st, test start $T0");
is($m0->sum('meshgate_downstream_requests_total'), 0,
    'no request counted before the first');
is($m0->sum('meshgate_tracing_spans_sampled_total')
    + $m0->sum('meshgate_tracing_spans_sent_total')
    + $m0->sum('meshgate_tracing_spans_dropped_total'), 0,
    'no trace span without tracing');
is(scalar($m0->series('meshgate_downstream_requests_total',
    listener => 'admin')), 0, 'the admin listener has no series');

checkpoint('the exact counts');

###########################################################################
# Exact counts over both workers: 200 requests from 10 parallel clients,
# one connection each, 120 x 200, 50 x 404, 30 x 503.

my @mix = ((['/x', 200]) x 12, (['/status/404', 404]) x 5,
    (['/status/503', 503]) x 3);
my $h = start_clients('mix', 10, sub {
    my ($k) = @_;
    my ($i, $fails, @r) = (0, 0);
    for (@mix) {
        $i++;
        push @r, req('app', "$_->[0]?p=mix-$k-$i");
        $fails = $r[-1]{status} ? 0 : $fails + 1;
        last if $fails >= 3;
    }
    return @r;
});
my @res = wait_clients($h);
is(scalar @res, 200, '200 requests made');
my %by = (2 => 0, 4 => 0, 5 => 0);
$by{substr($_->{status}, 0, 1)}++ for @res;
is_deeply(\%by, { 2 => 120, 4 => 50, 5 => 30 },
    'the clients got 120 x 2xx, 50 x 4xx and 30 x 5xx');
my ($sent, $got) = (0, 0);
$sent += $_->{sent}, $got += $_->{got} for @res;

my $m1 = scrape_until(sub {
    delta($m0, $_[0], 'meshgate_downstream_requests_total',
        listener => 'mesh') >= 200
        && delta($m0, $_[0], 'meshgate_downstream_sent_bytes_total',
            listener => 'mesh') >= $got });

my @lines;
waitfor(sub {
    @lines = grep { m{"GET /\S+\?p=mix-} } split /\n/,
        read_file("$dir/access.log");
    @lines >= 200;
}, 5);
my %pids;
$pids{$_}++ for map { / pid=(\d+)/ ? $1 : () } @lines;
is(scalar(keys %pids), 2, 'both workers served the requests')
    or diag(explain \%pids);

for my $c ([ '1xx', 0 ], [ '2xx', 120 ], [ '3xx', 0 ], [ '4xx', 50 ],
    [ '5xx', 30 ])
{
    my ($class, $n) = @$c;
    is(delta($m0, $m1, 'meshgate_downstream_requests_total',
        listener => 'mesh', route => 'app', class => $class), $n,
        "downstream_requests_total{listener=mesh,route=app,class=$class}"
        . " grew by $n");
    is(delta($m0, $m1, 'meshgate_upstream_endpoint_requests_total',
        cluster => 'app', endpoint => $B1, class => $class), $n,
        "upstream_endpoint_requests_total{cluster=app,class=$class} grew"
        . " by $n");
    is(delta($m0, $m1, 'meshgate_upstream_requests_total', cluster => 'app',
        priority => '0', region => 'home', class => $class), $n,
        "upstream_requests_total{cluster=app,priority=0,region=home,"
        . "class=$class} grew by $n");
}
is(delta($m0, $m1, 'meshgate_downstream_requests_total'), 200,
    'downstream_requests_total grew by 200 in all');
is(delta($m0, $m1, 'meshgate_upstream_attempts_total', cluster => 'app',
    priority => '0', region => 'home'), 200,
    'upstream_attempts_total{cluster=app,priority=0} grew by 200');
is(delta($m0, $m1, 'meshgate_upstream_retries_total', cluster => 'app'), 0,
    'no retry for app');
is(delta($m0, $m1, 'meshgate_downstream_connections_total',
    listener => 'mesh'), 200,
    'downstream_connections_total{listener=mesh} grew by 200 (no keep-alive)');
is(delta($m0, $m1, 'meshgate_downstream_received_bytes_total',
    listener => 'mesh'), $sent,
    "downstream_received_bytes_total grew by the $sent bytes sent");
is(delta($m0, $m1, 'meshgate_downstream_sent_bytes_total',
    listener => 'mesh'), $got,
    "downstream_sent_bytes_total grew by the $got bytes received");
is(hdelta($m0, $m1, 'meshgate_downstream_request_duration_seconds',
    listener => 'mesh', route => 'app')->{count}, 200,
    'the route histogram counted 200 requests');
is(hdelta($m0, $m1, 'meshgate_upstream_request_duration_seconds',
    cluster => 'app', priority => '0')->{count}, 200,
    'the upstream histogram counted 200 responses');
cmp_ok(delta($m0, $m1, 'meshgate_upstream_connections_total',
    cluster => 'app', endpoint => $B1), '>=', 1,
    'upstream connections to b1 counted');
is(delta($m0, $m1, 'meshgate_downstream_requests_total',
    listener => 'edge'), 0, 'nothing counted on the edge listener');

checkpoint('the route names');

###########################################################################
# Listeners, route names, direct responses and requests with no route.

my $ma = scrape_ok();
req('app', '/x?p=edge', port => port(8001)) for 1 .. 5;
req('api.example.com', "/users/$_") for 1 .. 3;
my @direct = map { req('direct', "/d$_") } 1 .. 2;
my @none = map { req('nomatch.test', "/n$_") } 1 .. 3;
is_deeply([ map { $_->{status} } @direct, @none ], [ 204, 204, 404, 404, 404 ],
    'direct responses and unrouted requests answered');
my $mb = scrape_until(sub { delta($ma, $_[0],
    'meshgate_downstream_requests_total') >= 13 });
is(delta($ma, $mb, 'meshgate_downstream_requests_total', listener => 'edge',
    route => 'app', class => '2xx'), 5, 'the edge listener counts its own 5');
is(delta($ma, $mb, 'meshgate_downstream_requests_total', listener => 'mesh',
    route => 'app'), 0, '... and the mesh listener none of them');
is(delta($ma, $mb, 'meshgate_downstream_connections_total',
    listener => 'edge'), 5, 'edge: 5 connections');
is(delta($ma, $mb, 'meshgate_downstream_requests_total', listener => 'mesh',
    route => 'api.example.com/users', class => '2xx'), 3,
    'a route without a name is named by its first domain and path');
is(delta($ma, $mb, 'meshgate_downstream_requests_total', listener => 'mesh',
    route => 'direct', class => '2xx'), 2, 'direct responses are counted');
is(delta($ma, $mb, 'meshgate_downstream_requests_total', listener => 'mesh',
    route => '(none)', class => '4xx'), 3,
    'requests that matched no route count as route="(none)"');
is(delta($ma, $mb, 'meshgate_upstream_attempts_total'), 8,
    'only the 8 proxied requests reached a cluster');

###########################################################################
# HTTP/2: a client with 6 streams on one connection (nghttp), and a
# cluster reached over h2c.

SKIP: {
    skip 'no nghttp (nghttp2-client)', 5 unless $nghttp || $CI;
    ok($nghttp, 'nghttp is installed') or last;
    my $m = scrape_ok();
    my $p = port(8002);
    my $out = `'$nghttp' -n -s -t 10 -H ':authority: app' @{[ map {
        "http://127.0.0.1:$p/x?p=h2-$_" } 1 .. 6 ]} 2>&1`;
    my @sizes = $out =~ /^\s*\d+\s+\S+\s+\S+\s+\S+\s+200\s+(\d+)\s/mg;
    is(scalar @sizes, 6, 'nghttp: 6 answers 200 on one connection')
        or diag($out);
    my $body = 0;
    $body += $_ for @sizes;
    my $m2 = scrape_until(sub { delta($m, $_[0],
        'meshgate_downstream_requests_total', listener => 'h2') >= 6 });
    is(delta($m, $m2, 'meshgate_downstream_requests_total', listener => 'h2',
        route => 'app', class => '2xx'), 6, 'h2: 6 requests counted');
    is(delta($m, $m2, 'meshgate_downstream_connections_total',
        listener => 'h2'), 1, 'h2: 1 connection');
    my $in = delta($m, $m2, 'meshgate_downstream_received_bytes_total',
        listener => 'h2');
    my $outb = delta($m, $m2, 'meshgate_downstream_sent_bytes_total',
        listener => 'h2');
    ok($in >= 24 + 6 * 9 && $in < 8192 && $outb >= $body
        && $outb < $body + 8192, "h2: $in bytes received, $outb sent"
        . " ($body of bodies)");
}

SKIP: {
    skip 'no python3-h2 for the HTTP/2 backend', 6 unless $h2py || $CI;
    ok($h2py, 'python3-h2 is installed') or last;
    my $m = scrape_ok();
    my @r = map { req('h2up', "/x?p=h2up-$_") } 1 .. 5;
    is(count_of(\@r, sub { $_[0]{status} == 200 }), 5,
        'h2up: 5 requests answered over h2c');
    my $m2 = scrape_until(sub { delta($m, $_[0],
        'meshgate_upstream_endpoint_requests_total', cluster => 'h2up') >= 5 });
    is(delta($m, $m2, 'meshgate_upstream_endpoint_requests_total',
        cluster => 'h2up', endpoint => $H2, class => '2xx'), 5,
        'h2up: 5 responses from the HTTP/2 endpoint');
    is(delta($m, $m2, 'meshgate_upstream_attempts_total', cluster => 'h2up',
        priority => '0'), 5, 'h2up: 5 attempts');
    my $cx = delta($m, $m2, 'meshgate_upstream_connections_total',
        cluster => 'h2up', endpoint => $H2);
    ok($cx >= 1 && $cx <= 2, "h2up: $cx connections (one per worker at most)");
    is(hdelta($m, $m2, 'meshgate_upstream_request_duration_seconds',
        cluster => 'h2up')->{count}, 5, 'h2up: the latency histogram has 5');
}

checkpoint('the histograms');

###########################################################################
# Latency histograms: 30 fast requests and 10 that the backend holds for
# 300 ms, at the same time.

my $slow_clients = start_clients('slow', 10, sub {
    return req('timed', "/delay/300?p=slow-$_[0]");
});
my @fast = map { req('timed', "/x?p=fast-$_") } 1 .. 30;
my @slow = wait_clients($slow_clients);
is(scalar(grep { $_->{status} == 200 } @fast, @slow), 40,
    '40 timed requests answered 200');
my $mt = scrape_until(sub { $_[0]->histogram(
    'meshgate_downstream_request_duration_seconds', route => 'timed')
    ->{count} >= 40 });

my $client_sum = 0;
$client_sum += $_->{time} for @fast, @slow;
my @ctime = sort { $a <=> $b } map { $_->{time} } @fast, @slow;
for my $hist ([ 'meshgate_downstream_request_duration_seconds',
        'route', listener => 'mesh', route => 'timed' ],
    [ 'meshgate_upstream_request_duration_seconds', 'upstream',
        cluster => 'timed', priority => '0', region => 'home' ])
{
    my ($fam, $what, %f) = @$hist;
    my $hd = hdelta($ma, $mt, $fam, %f);
    my @b = @{$hd->{buckets}};
    is(scalar @b, 59, "$what histogram: 58 bounds and +Inf");
    my @want = (@BOUNDS, '+Inf');
    my @le = map { $_->[0] } @b;
    is(scalar(grep { $le[$_] ne '+Inf' && $want[$_] ne '+Inf'
        ? abs($le[$_] - $want[$_]) > 1e-9 * $want[$_]
        : $le[$_] ne $want[$_] } 0 .. $#want), 0,
        "$what histogram: le = 1..9 x 10^k from 1e-05 to 9, then 10, 20,"
        . " 30, 60, +Inf") or diag("le: @le");
    is($hd->{count}, 40, "$what histogram: _count 40");
    is(Test::Metrics::bucket($hd, '+Inf'), 40, "$what histogram: +Inf 40");
    # No slow request can take 300 ms or less; a fast one measured at
    # 300 ms or less by the client took no more in meshgate.
    for my $le (0.2, 0.3, 1) {
        my $lo = count_of([ @fast, @slow ], sub { $_[0]{time} <= $le });
        my $hi = $le < 0.3 + 1e-9 ? 30 : 40;
        my $n = Test::Metrics::bucket($hd, $le) // -1;
        ok($n >= $lo && $n <= $hi, "$what histogram: le=\"$le\" holds"
            . ($lo == $hi ? " $hi" : " $lo..$hi") . " requests")
            or diag("bucket $le: $n");
    }
    my $mid = (Test::Metrics::bucket($hd, 0.3) // 0)
        - (Test::Metrics::bucket($hd, 0.2) // 0);
    ok($mid <= count_of(\@fast, sub { $_[0]{time} > 0.2 }),
        "$what histogram: no slow request between 200 and 300 ms")
        or diag("$mid in (0.2, 0.3]");
    ok($hd->{sum} >= 10 * 0.3 && $hd->{sum} <= $client_sum + 0.01,
        "$what histogram: _sum within [3.0, $client_sum] s")
        or diag("sum $hd->{sum}");
    # The k-th fastest in meshgate was no slower than the k-th fastest
    # as the clients measured: the estimate is at most the bound above it.
    my ($p50, $p90, $p99) = map { quantile($_, $hd->{buckets}) // -1 }
        0.5, 0.9, 0.99;
    ok($p50 > 0 && $p50 < 0.3 && $p50 <= bound_above($ctime[19]),
        "$what histogram: p50 among the fast ones") or diag("p50 $p50");
    ok($p90 > 0.3 && $p90 <= bound_above($ctime[35]),
        "$what histogram: p90 among the slow ones") or diag("p90 $p90");
    ok($p99 >= $p90 && $p99 <= bound_above($ctime[39]),
        "$what histogram: p99 among the slow ones") or diag("p99 $p99");
}

checkpoint('the gauges');

###########################################################################
# Active gauges under load, and back to 0.

{
    my $s = http("GET /delay/1500?p=gauge HTTP/1.1\r\nHost: app\r\n"
        . "Connection: close\r\n\r\n", start => 1);
    my $mg = scrape_until(sub {
        $_[0]->sum('meshgate_downstream_requests_active', listener => 'mesh')
            >= 1 && $_[0]->sum('meshgate_upstream_requests_active',
            cluster => 'app') >= 1 });
    is($mg->sum('meshgate_downstream_requests_active', listener => 'mesh'),
        1, 'downstream_requests_active 1 during a slow request');
    is($mg->sum('meshgate_downstream_connections_active',
        listener => 'mesh'), 1, 'downstream_connections_active 1');
    is($mg->sum('meshgate_upstream_requests_active', cluster => 'app'), 1,
        'upstream_requests_active{cluster=app} 1');
    cmp_ok($mg->sum('meshgate_upstream_connections_active', cluster => 'app',
        endpoint => $B1), '>=', 1, 'upstream_connections_active >= 1');
    like(http(undef, socket => $s, timeout => 5) // '', qr/^HTTP\/1\.1 200 /,
        'the slow request ends');
}
my $GAUGES = sub {
    my ($m) = @_;
    return $m->sum('meshgate_downstream_requests_active')
        + $m->sum('meshgate_downstream_connections_active')
        + $m->sum('meshgate_upstream_requests_active')
        + $m->sum('meshgate_upstream_requests_pending');
};
my $mz = scrape_until(sub { $GAUGES->($_[0]) == 0 });
is($GAUGES->($mz), 0, 'active requests, connections and pending requests'
    . ' are back to 0');
is(scalar(grep { $_->{value} < 0 } map { $mz->series($_) }
    qw(meshgate_downstream_requests_active
       meshgate_downstream_connections_active
       meshgate_upstream_requests_active meshgate_upstream_requests_pending
       meshgate_upstream_connections_active)), 0, 'no gauge below 0');

checkpoint('the upstream failures');

###########################################################################
# Upstream failures.

my $mu0 = scrape_ok();

# A dead endpoint: connect failures, each retried on the live one.
my @flaky = map { req('flaky', "/x?p=flaky-$_") } 1 .. 10;
is(count_of(\@flaky, sub { $_[0]{status} == 200 }), 10,
    'flaky: every request answered 200 by the live endpoint');

# Resets: /reset closes with RST after reading the request.
my @resets = map { req('app', "/reset?p=$_") } 1 .. 2;
is_deeply([ map { $_->{status} } @resets ], [ 502, 502 ],
    'two requests reset by the upstream get 502');

# A response timeout (0.3 s) on a backend that takes 1.5 s.
is(req('tmo', '/delay/1500?p=tmo')->{status}, 504, 'tmo: 504 after 0.3 s');

# Circuit breaker: max_requests = 1 (1 per worker): 6 at once.
my $cb = start_clients('cb', 6, sub { req('cb', "/delay/1000?p=cb-$_[0]") });
my @cb = wait_clients($cb);
my $over = count_of(\@cb, sub { $_[0]{status} == 503
    && $_[0]{error} eq 'overflow' });
cmp_ok($over, '>=', 4, "cb: $over of 6 concurrent requests overflowed")
    or diag(explain [ map { "$_->{status} $_->{error}" } @cb ]);

# Outlier ejection after 2 consecutive 5xx on one connection (one worker).
{
    my $c = Test::Meshgate::Client->new(port => port(8000));
    my @st = map { my $r = $c->get("/status/500?p=ej-$_", host => 'ej');
        $r ? $r->{status} : 0 } 1 .. 2;
    is_deeply(\@st, [ 500, 500 ], 'ej: two 500s on one connection');
    $c->close;
}

my $mu = scrape_until(sub {
    $_[0]->sum('meshgate_upstream_overflows_total', cluster => 'cb')
        - $mu0->sum('meshgate_upstream_overflows_total', cluster => 'cb')
        >= $over
    && $_[0]->sum('meshgate_outlier_ejections_total', cluster => 'ej') >= 1 });
my $cf = delta($mu0, $mu, 'meshgate_upstream_connect_failures_total',
    cluster => 'flaky', endpoint => $DEAD);
cmp_ok($cf, '>=', 1, "flaky: $cf connect failures to the dead endpoint");
is(delta($mu0, $mu, 'meshgate_upstream_retries_total', cluster => 'flaky'),
    $cf, 'flaky: each connect failure was retried and counted as a retry');
is(delta($mu0, $mu, 'meshgate_upstream_attempts_total', cluster => 'flaky',
    priority => '0'), 10 + $cf, 'flaky: attempts = requests + retries');
is(delta($mu0, $mu, 'meshgate_upstream_endpoint_requests_total',
    cluster => 'flaky', endpoint => $B1, class => '2xx'), 10,
    'flaky: the live endpoint answered 10');
is(delta($mu0, $mu, 'meshgate_upstream_endpoint_requests_total',
    cluster => 'flaky', endpoint => $DEAD), 0,
    'flaky: the dead endpoint answered none');
is(delta($mu0, $mu, 'meshgate_upstream_connections_total',
    cluster => 'flaky', endpoint => $DEAD), 0,
    'flaky: no connection to the dead endpoint was opened');
is(delta($mu0, $mu, 'meshgate_upstream_resets_total', cluster => 'app',
    endpoint => $B1), 2, 'app: 2 resets');
is(delta($mu0, $mu, 'meshgate_downstream_requests_total', route => 'app',
    class => '5xx'), 2, 'app: the 2 resets are 5xx downstream');
is(delta($mu0, $mu, 'meshgate_upstream_timeouts_total', cluster => 'tmo'), 1,
    'tmo: 1 timeout');
is(hdelta($mu0, $mu, 'meshgate_upstream_request_duration_seconds',
    cluster => 'app')->{count} + hdelta($mu0, $mu,
    'meshgate_upstream_request_duration_seconds', cluster => 'tmo')->{count},
    0, 'resets and timeouts got no upstream response: no upstream latency');
is(delta($mu0, $mu, 'meshgate_upstream_overflows_total', cluster => 'cb'),
    $over, "cb: $over overflows, as the clients saw");
is(delta($mu0, $mu, 'meshgate_downstream_requests_total', route => 'cb',
    class => '5xx'), $over, 'cb: the overflows are 5xx downstream');
is(delta($mu0, $mu, 'meshgate_upstream_attempts_total', cluster => 'cb'),
    6 - $over, 'cb: only the admitted requests were sent');
is(delta($mu0, $mu, 'meshgate_outlier_ejections_total', cluster => 'ej',
    endpoint => $B2), 1, 'ej: 1 outlier ejection');
is(delta($mu0, $mu, 'meshgate_upstream_retries_total'), $cf,
    'no other retry anywhere');

checkpoint('the spill-over');

###########################################################################
# Spill-over: the only local endpoint of "spill" fails its health check,
# so its requests go to the front proxy of region "far" (priority 1).

my $spill_down = waitfor(sub {
    my $j = eval { JSON::PP::decode_json(parse_response(http_get(
        '/clusters?format=json', port => $ADMIN), eof => 1)->{body}) };
    for my $c (@{$j->{clusters} || []}) {
        next unless $c->{name} eq 'spill';
        return grep { $_->{address} eq $LOCAL
            && $_->{health} eq 'unhealthy' } @{$c->{endpoints}};
    }
    return 0;
}, 10);
ok($spill_down, 'spill: the local endpoint is unhealthy');
my $ms0 = scrape_ok();
my @spill = map { req('spill', "/x?p=spill-$_") } 1 .. 10;
is(count_of(\@spill, sub { $_[0]{backend} eq 'far' }), 10,
    'spill: the front proxy of region far answered all 10');
my $ms = scrape_until(sub { delta($ms0, $_[0],
    'meshgate_upstream_requests_total', cluster => 'spill') >= 10 });
is(delta($ms0, $ms, 'meshgate_upstream_attempts_total', cluster => 'spill',
    priority => '1', region => 'far'), 10,
    'spill: 10 attempts to priority 1, region far');
is(delta($ms0, $ms, 'meshgate_upstream_attempts_total', cluster => 'spill',
    priority => '0', region => 'home'), 0, 'spill: none to priority 0');
is(delta($ms0, $ms, 'meshgate_upstream_requests_total', cluster => 'spill',
    priority => '1', region => 'far', class => '2xx'), 10,
    'spill: 10 responses from priority 1');
is(delta($ms0, $ms, 'meshgate_upstream_endpoint_requests_total',
    cluster => 'spill', endpoint => $FAR, class => '2xx'), 10,
    'spill: the front proxy is the endpoint that answered');
is(hdelta($ms0, $ms, 'meshgate_upstream_request_duration_seconds',
    cluster => 'spill', priority => '1', region => 'far')->{count}, 10,
    'spill: priority 1 latency histogram counted 10');
is($ms->value('meshgate_health_check_transitions_total', cluster => 'spill',
    region => 'home', endpoint => $LOCAL, to => 'unhealthy'), 1,
    'spill: one health check transition to unhealthy');
is($ms->value('meshgate_health_check_transitions_total', cluster => 'spill',
    region => 'home', endpoint => $LOCAL, to => 'healthy'), 0,
    'spill: none to healthy');
is($ms->value('meshgate_endpoint_healthy', cluster => 'spill',
    endpoint => $LOCAL), 0, 'endpoint_healthy 0 for the unhealthy endpoint');
is($ms->value('meshgate_endpoint_healthy', cluster => 'app',
    endpoint => $B1), 1, 'endpoint_healthy 1 for an unchecked endpoint');

checkpoint('the reloads');

###########################################################################
# Reloads: counters go on, never backwards.

my $mr0 = scrape_ok();
my $reloads0 = $mr0->value('meshgate_reloads_total') // -1;
is($t->reload, 1, 'reload with the same configuration');
req('app', "/x?p=reload1-$_") for 1 .. 10;
my $mr1 = scrape_until(sub { delta($mr0, $_[0],
    'meshgate_downstream_requests_total', route => 'app') >= 10
    && ($_[0]->value('meshgate_generation') // 0) == 2 });
is($mr1->value('meshgate_reloads_total'), $reloads0 + 1,
    'reloads_total grew by 1');
is($mr1->value('meshgate_generation'), 2, 'generation 2');
is(delta($mr0, $mr1, 'meshgate_downstream_requests_total', listener => 'mesh',
    route => 'app', class => '2xx'), 10,
    'same configuration: route app counts on (+10)');
is(delta($mr0, $mr1, 'meshgate_upstream_endpoint_requests_total',
    cluster => 'app', endpoint => $B1, class => '2xx'), 10,
    'same configuration: endpoint b1 counts on (+10)');
is_deeply([ went_down($mr0, $mr1) ], [],
    'same configuration: no counter went down or vanished');

$t->write_conf(conf(changed => 1));
is($t->reload, 1, 'reload with a changed configuration (a route and a'
    . ' cluster added in front, a timeout changed)');
req('app', "/x?p=reload2-$_") for 1 .. 10;
req('extra', "/x?p=extra-$_") for 1 .. 3;
my $mr2 = scrape_until(sub { delta($mr1, $_[0],
    'meshgate_downstream_requests_total') >= 13
    && ($_[0]->value('meshgate_generation') // 0) == 3 });
is($mr2->value('meshgate_reloads_total'), $reloads0 + 2,
    'reloads_total grew by 1 again');
is(delta($mr1, $mr2, 'meshgate_downstream_requests_total', listener => 'mesh',
    route => 'app', class => '2xx'), 10,
    'changed configuration: route app counts on (+10)');
is(delta($mr1, $mr2, 'meshgate_upstream_requests_total', cluster => 'app',
    priority => '0', class => '2xx'), 10,
    'changed configuration: cluster app counts on (+10)');
is($mr2->sum('meshgate_downstream_requests_total', route => 'extra'), 3,
    'the new route counts from 0');
is($mr2->sum('meshgate_upstream_endpoint_requests_total', cluster => 'extra'),
    3, 'the new cluster counts from 0');
is_deeply([ went_down($mr1, $mr2) ], [],
    'changed configuration: no counter went down or vanished');
is($mr2->value('meshgate_health_check_transitions_total', cluster => 'spill',
    endpoint => $LOCAL, to => 'unhealthy'), 1,
    'the health verdict kept across reloads is not counted again');

# A broken configuration: a failure, and no reload.
$t->write_file('meshgate.conf', conf(changed => 1) . "bogus = 1;\n");
is($t->reload, 0, 'a broken configuration is refused');
my $mr3 = scrape_ok();
is($mr3->value('meshgate_reload_failures_total'),
    ($mr2->value('meshgate_reload_failures_total') // -1) + 1,
    'reload_failures_total grew by 1');
is($mr3->value('meshgate_reloads_total'), $reloads0 + 2,
    'reloads_total did not');
$t->write_conf(conf(changed => 1));

checkpoint('the worker kill');

###########################################################################
# A worker killed while it holds a request: respawned, counted, and its
# gauges do not stay behind.

{
    ok(waitfor(sub { proxy_workers() == 2 }, 5), 'two workers before the kill');
    my $mk0 = scrape_ok();
    my $restarts0 = $mk0->value('meshgate_worker_restarts_total') // -1;
    my $s = http("GET /delay/3000?p=kill HTTP/1.1\r\nHost: app\r\n"
        . "Connection: close\r\n\r\n", start => 1);
    my $cport = $s->sockport;
    scrape_until(sub { $_[0]->sum('meshgate_downstream_requests_active',
        listener => 'mesh') >= 1 });
    my ($victim) = grep { Test::Meshgate::tcp_sockets($_, lport => port(8000),
        rport => $cport) } proxy_workers();
    ok($victim, 'found the worker that holds the request');
    kill 'KILL', $victim if $victim;
    is(http(undef, socket => $s, timeout => 5), '',
        'the client sees its connection closed');
    my $mk = scrape_until(sub {
        ($_[0]->value('meshgate_worker_restarts_total') // 0) > $restarts0
            && $GAUGES->($_[0]) == 0 && proxy_workers() == 2 });
    ok(proxy_workers() == 2, 'the killed worker was replaced');
    is($mk->value('meshgate_worker_restarts_total'), $restarts0 + 1,
        'worker_restarts_total grew by 1');
    is($GAUGES->($mk), 0, "the dead worker's active request and connections"
        . ' are not counted any more');
    is_deeply([ went_down($mk0, $mk) ], [],
        'no counter went down with the dead worker');
    # Its counts stay; the new worker counts on.
    req('app', "/x?p=after-kill-$_") for 1 .. 4;
    my $mk2 = scrape_until(sub { delta($mk, $_[0],
        'meshgate_downstream_requests_total', route => 'app') >= 4 });
    is(delta($mk, $mk2, 'meshgate_downstream_requests_total', route => 'app',
        class => '2xx'), 4, 'counting goes on after the respawn');
}

checkpoint('the whole page');

###########################################################################
# The whole page: every family, its type, help and labels.

my $mf = scrape_ok();
is_deeply($mf->{errors}, [], 'the full page parses cleanly')
    or diag(explain [ @{$mf->{errors}}[0 .. 9] ]);
for my $fam (sort keys %Test::Metrics::FAMILIES) {
    my ($type, @labels) = @{$Test::Metrics::FAMILIES{$fam}};
    is($mf->{types}{$fam} // 'missing', $type, "$fam: TYPE $type");
    ok(length($mf->{help}{$fam} // ''), "$fam: HELP");
    my @names = $type eq 'histogram' ? map { "${fam}_$_" } qw(bucket sum count)
        : ($fam);
    my @s = map { $mf->series($_) } @names;
    # Discovery clusters' families have series only where there are some
    # (t/90eds.t checks them).
    ok(@s || $fam =~ /^meshgate_xds_(?:updates|rejections)_total$|^meshgate_xds_endpoints$/,
        "$fam: has series");
    my $want = join ',', sort @labels;
    my @odd = grep {
        my %l = %{$_->{labels}};
        delete $l{le} if $_->{name} =~ /_bucket$/;
        join(',', sort keys %l) ne $want } @s;
    is(scalar @odd, 0, "$fam: labels {$want}")
        or diag(explain [ map { $_->{labels} } @odd[0 .. 2] ]);
}
my %known = map { $_ => 1 } keys %Test::Metrics::FAMILIES;
is_deeply([ grep { !$known{$_} } sort keys %{$mf->{types}} ], [],
    'no family beyond the documented ones');
is(scalar(grep { $_->{value} < 0 } map { $mf->series($_) }
    qw(meshgate_upstream_connections_active)), 0,
    'upstream_connections_active is never negative');

SKIP: {
    skip 'no promtool (the prometheus package)', 2
        unless $promtool || $CI;
    ok($promtool, 'promtool is installed') or last;
    my $f = "$dir/scrape.txt";
    open my $fh, '>', $f or die "$f: $!";
    print $fh $mf->{text};
    close $fh;
    my $out = `'$promtool' check metrics < '$f' 2>&1`;
    is($?, 0, 'promtool check metrics passes') or diag($out);
}

###########################################################################
# /stats: the same numbers as text.

{
    my $r = parse_response(http_get('/stats', port => $ADMIN), eof => 1);
    is($r->{status}, 200, '/stats answers 200');
    like($r->{headers}{'content-type'} // '', qr{^text/plain},
        '/stats is text/plain');
    my %s = map { /^(\S+): (.*)$/ ? ($1 => $2) : () } split /\n/,
        $r->{body} // '';
    my $mm = scrape_ok();
    is($s{'server.metrics'}, 'on', '/stats: server.metrics: on');
    is($s{'server.reloads'}, $mm->value('meshgate_reloads_total'),
        '/stats: server.reloads');
    is($s{'listener.mesh.cx_total'},
        $mm->value('meshgate_downstream_connections_total',
            listener => 'mesh'), '/stats: listener.mesh.cx_total');
    is($s{'listener.mesh.route.app.rq_2xx'},
        $mm->value('meshgate_downstream_requests_total', listener => 'mesh',
            route => 'app', class => '2xx'),
        '/stats: listener.mesh.route.app.rq_2xx');
    is($s{'cluster.flaky.retries'}, $cf, '/stats: cluster.flaky.retries');
    is($s{'cluster.spill.region.far.attempts'}, 10,
        '/stats: cluster.spill.region.far.attempts');
    is($s{"cluster.app.endpoint.$B1.rq_2xx"},
        $mm->value('meshgate_upstream_endpoint_requests_total',
            cluster => 'app', endpoint => $B1, class => '2xx'),
        '/stats: cluster.app.endpoint.ADDR.rq_2xx');
    is($s{'tracing.spans_dropped'}, 0, '/stats: tracing.spans_dropped');
    my $rt = $s{'listener.mesh.route.timed.rq_time'} // '';
    my %q = $rt =~ /(\w+)=([\d.]+)/g;
    is($q{count}, 40, '/stats: rq_time count of route timed');
    ok(($q{p50} // -1) > 0 && $q{p50} < 0.3
        && $q{p50} <= bound_above($ctime[19])
        && ($q{p90} // -1) > 0.3 && $q{p90} <= bound_above($ctime[35])
        && ($q{p99} // -1) >= $q{p90}, '/stats: rq_time p50, p90 and p99')
        or diag($rt);
}

###########################################################################
# A real Prometheus server scraped the admin listener all along.

SKIP: {
    skip 'no prometheus binary (the prometheus package)', 7
        unless $prometheus_bin || $CI;
    ok($prom, 'prometheus runs') or last;
    my $mq = scrape_ok();
    my $want = $mq->sum('meshgate_downstream_requests_total');
    my $got_sum;
    ok(waitfor(sub {
        $got_sum = $prom->value('sum(meshgate_downstream_requests_total)');
        defined $got_sum && $got_sum == $want;
    }, 15), "prometheus: sum(meshgate_downstream_requests_total) = $want")
        or diag('prometheus has ' . ($got_sum // 'nothing') . '; target: '
            . explain($prom->target) . "\n" . $prom->log);
    is($prom->value('up{job="meshgate"}'), 1, 'prometheus: up{job="meshgate"}'
        . ' is 1');
    is($prom->value('scrape_samples_scraped{job="meshgate"}'),
        scalar @{$mq->{samples}}, 'prometheus: every sample was taken');
    my @reset = grep {
        my $n = $prom->value("sum(resets(${_}[10m]))");
        (!defined $n && !/^meshgate_xds_/) || (defined $n && $n != 0);
    } grep { $Test::Metrics::FAMILIES{$_}[0] eq 'counter' }
        sort keys %Test::Metrics::FAMILIES;
    is_deeply(\@reset, [], 'prometheus: no counter reset across the reloads'
        . ' and the crash');
    my $pq = $prom->value('histogram_quantile(0.9, sum by (le) '
        . '(meshgate_downstream_request_duration_seconds_bucket'
        . '{route="timed"}))') // -1;
    my $mine = quantile(0.9, $mq->histogram(
        'meshgate_downstream_request_duration_seconds', route => 'timed')
        ->{buckets}) // -2;
    ok(abs($pq - $mine) < 1e-6 && $pq > 0.3,
        'prometheus: histogram_quantile(0.9) of route timed is the p90 above')
        or diag("prometheus $pq, here $mine");
    is($prom->value('sum(meshgate_upstream_attempts_total{priority!="0"})'
        . ' / sum(meshgate_upstream_attempts_total{cluster="spill"})'), 1,
        'prometheus: the spill-over share of cluster spill is 1');
}

###########################################################################
# gateway.metrics = false: nothing is counted.

{
    my $t2 = Test::Meshgate->new;
    (my $c2 = conf(metrics => 'metrics = false;')) =~ s/%%PORT_80(\d\d)%%/%%PORT_82$1%%/g;
    $t2->write_conf($c2);
    $t2->run_backend(port => 8281, name => 'off1');
    $t2->run;
    my $r2 = http_get('/x', host => 'app', port => port(8200));
    like($r2 // '', qr/^HTTP\/1\.1 200 /, 'metrics off: requests are served');
    http_get('/x', host => 'app', port => port(8200)) for 1 .. 4;
    sleep 0.2;
    my $m = scrape(port(8299));
    is($m->{status}, 200, 'metrics off: /stats/prometheus answers');
    is($m->sum('meshgate_downstream_requests_total')
        + $m->sum('meshgate_upstream_attempts_total')
        + $m->sum('meshgate_downstream_connections_total')
        + $m->sum('meshgate_upstream_endpoint_requests_total'), 0,
        'metrics off: the counters stay 0');
    my $s = parse_response(http_get('/stats', port => port(8299)), eof => 1);
    like($s->{body} // '', qr/^server\.metrics: off$/m,
        'metrics off: /stats says so');
    $t2->stop_and_check;
}

$prom->stop if $prom;
$t->stop_and_check;
note(sprintf 'wall time %.1f s', time - $T0);
done_testing();
