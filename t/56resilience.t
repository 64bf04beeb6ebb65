#!/usr/bin/perl

# Resilience of a cluster: retries (on 5xx, gateway errors, listed
# statuses, resets and per-try timeouts; the number of attempts; bodies
# that left the buffer are not replayed; backoff; the retry budget),
# passive outlier detection (ejection, its length, max_ejection_percent)
# and circuit breakers (max_requests, max_connections, max_retries).
#
# The backends are t/backend/mg-flaky.pl: the query string tells each one,
# by its name, what to do with a request (?A=503&B=200), so the endpoints of
# one cluster answer the same request differently, and each logs every
# request it gets, so the tests count upstream requests. One worker, so the
# balancer, the outlier counts and the breakers are those of one process.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Select;
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;

# Backends A, B and C.
my %PORTNUM = (A => 8081, B => 8082, C => 8083);
my %backend;
for my $n (sort keys %PORTNUM) {
    my $addr = '127.0.0.1:' . port($PORTNUM{$n});
    $backend{$n} = $t->run_daemon($^X, "$FindBin::Bin/backend/mg-flaky.pl",
        '--listen', $addr, '--name', $n, '--watch-parent');
    waitforsocket($addr, 10) or die "backend $n did not start:\n"
        . $t->daemon_log($backend{$n});
}
sub addr { '127.0.0.1:' . port($PORTNUM{$_[0]}) }

# One cluster per case, each reached as NAME.test.
my @clusters = (
    # 1. 5xx
    [ r5xx => 'AB', 'retry = { on = [ "connect-failure", "5xx" ]; };' ],
    [ only5xx => 'AB', 'retry = { on = [ "5xx" ]; };' ],
    [ plain => 'AB', '' ],
    # 2. retriable-status, gateway-error
    [ r409 => 'AB', 'retry = { on = [ "connect-failure", '
        . '"retriable-status" ]; statuses = [ "409" ]; };' ],
    [ r409only => 'AB', 'retry = { on = [ "retriable-status" ]; '
        . 'statuses = [ "409" ]; };' ],
    [ r410 => 'AB', 'retry = { on = [ "connect-failure", '
        . '"retriable-status" ]; statuses = [ "410" ]; };' ],
    [ rgw => 'AB', 'retry = { on = [ "connect-failure", '
        . '"gateway-error" ]; };' ],
    # 3. attempts
    [ ratt2 => 'ABC', 'retry = { on = [ "connect-failure", "5xx" ]; '
        . 'attempts = 2; };' ],
    [ ratt3 => 'ABC', 'retry = { on = [ "connect-failure", "5xx" ]; '
        . 'attempts = 3; };' ],
    [ rattleft => 'AB', 'retry = { on = [ "connect-failure", "5xx" ]; '
        . 'attempts = 3; };' ],
    [ rspread => 'ABC', 'retry = { on = [ "connect-failure", "5xx" ]; };' ],
    [ rhealth => 'AB', 'retry = { on = [ "connect-failure", "5xx" ]; }; '
        . 'health_check = { path = "/hc?B=503"; interval = 0.2; '
        . 'timeout = 0.2; healthy_threshold = 1; '
        . 'unhealthy_threshold = 1; };' ],
    # 4. reset
    [ rreset => 'AB', 'retry = { on = [ "connect-failure", "reset" ]; };' ],
    [ noreset => 'AB', '' ],
    [ rstale => 'AB', 'retry = { on = [ "connect-failure", "5xx" ]; };' ],
    # 5. per_try_timeout
    [ rpertry => 'AB', 'retry = { on = [ "connect-failure", '
        . '"gateway-error" ]; per_try_timeout = 0.3; };' ],
    [ rslow => 'AB', 'response_timeout = 5.0; retry = { on = [ '
        . '"connect-failure", "gateway-error" ]; };' ],
    [ rpertry1 => 'AB', 'retry = { per_try_timeout = 0.3; };' ],
    # 6. bodies
    [ rbody => 'AB', 'retry = { on = [ "connect-failure", "5xx" ]; };' ],
    # 7. outlier detection
    [ rout => 'AB', 'outlier = { consecutive_5xx = 3; '
        . 'base_ejection_time = 2.0; };' ],
    [ routgw => 'AB', 'outlier = { consecutive_5xx = 0; '
        . 'consecutive_gateway_failure = 2; base_ejection_time = 2.0; };' ],
    [ rout2 => 'AB', 'outlier = { consecutive_5xx = 3; '
        . 'base_ejection_time = 2.0; };' ],
    [ routcap => 'AB', 'outlier = { consecutive_5xx = 2; '
        . 'base_ejection_time = 1.0; max_ejection_time = 1.5; };' ],
    [ rout3 => 'ABC', 'outlier = { consecutive_5xx = 3; '
        . 'base_ejection_time = 2.0; max_ejection_percent = 50; };' ],
    # 8. circuit breakers
    [ cbreq => 'A', 'circuit_breakers = { max_requests = 2; };' ],
    [ cbconn => 'A', 'circuit_breakers = { max_connections = 1; };' ],
    [ cbretry => 'ABC', 'retry = { on = [ "connect-failure", "5xx" ]; '
        . 'attempts = 2; budget = 1.0; }; '
        . 'circuit_breakers = { max_retries = 1; };' ],
    # 9. budget, backoff
    [ rbudget => 'AB', 'retry = { on = [ "connect-failure", "5xx" ]; '
        . 'attempts = 2; budget = 0.0; }; '
        . 'circuit_breakers = { max_retries = 100; };' ],
    [ rbudget5 => 'AB', 'retry = { on = [ "connect-failure", "5xx" ]; '
        . 'attempts = 2; budget = 0.5; }; '
        . 'circuit_breakers = { max_retries = 100; };' ],
    [ rcap => 'AB', 'retry = { on = [ "connect-failure", "5xx" ]; '
        . 'backoff = 5.0; max_backoff = 0.2; };' ],
    [ rjitter => 'AB', 'retry = { on = [ "connect-failure", "5xx" ]; '
        . 'backoff = 0.4; max_backoff = 0.4; };' ],
    # 10. bookkeeping
    [ rleak => 'AB', 'retry = { on = [ "connect-failure", "reset", "5xx" ]; '
        . 'per_try_timeout = 0.3; budget = 0.0; backoff = 0.3; '
        . 'max_backoff = 0.3; }; '
        . 'circuit_breakers = { max_requests = 2; max_retries = 100; };' ],
);

my $routes = join ",\n", map {
    qq(    { domains = [ "$_->[0].test" ]; prefix = "/"; )
        . qq(cluster = "$_->[0]"; })
} @clusters;
my $cdefs = join ",\n", map {
    my ($name, $eps, $extra) = @$_;
    my $e = join ', ', map { '{ address = "' . addr($_) . '"; }' }
        split //, $eps;
    qq{    { name = "$name"; endpoints = ( $e ); $extra }}
} @clusters;

$t->write_conf(<<"EOF");
gateway = { workers = 1; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = (
$routes ); };
clusters = (
$cdefs );
EOF
$t->run;

###########################################################################
# Helpers

# get($cluster, $target, %o): one request on a new connection; the parsed
# response with elapsed => seconds and who => X-Backend (or "none").
sub get {
    my ($cl, $target, %o) = @_;
    my $t0 = time;
    my $raw = http_get($target, host => "$cl.test", timeout => $o{timeout}
        || 10);
    my $r = parse_response($raw);
    $r->{elapsed} = time - $t0;
    $r->{who} = $r->{headers}{'x-backend'} // 'none';
    $r->{status} //= 'none';
    return $r;
}

# post($cluster, $target, $body, %o): a POST with Content-Length.
sub post {
    my ($cl, $target, $body, %o) = @_;
    my $t0 = time;
    my $raw = http("POST $target HTTP/1.1\r\nHost: $cl.test\r\n"
        . 'Content-Length: ' . length($body) . "\r\nConnection: close\r\n"
        . "\r\n" . $body, timeout => 10);
    my $r = parse_response($raw);
    $r->{elapsed} = time - $t0;
    $r->{who} = $r->{headers}{'x-backend'} // 'none';
    $r->{status} //= 'none';
    return $r;
}

# parallel($cluster, @targets): GETs all sent at once, each on its own
# connection; their parsed responses (with elapsed and who), in order.
sub parallel {
    my ($cl, @targets) = @_;
    my $t0 = time;
    my @s = map {
        http("GET $_ HTTP/1.1\r\nHost: $cl.test\r\nConnection: close\r\n\r\n",
            start => 1) or die "connect: $Test::Meshgate::ERROR\n"
    } @targets;
    my @buf = ('') x @s;
    my @done = (undef) x @s;
    my %open = map { $_ => 1 } 0 .. $#s;
    my $sel = IO::Select->new(@s);
    my $deadline = $t0 + 15;
    while (%open && time < $deadline) {
        for my $fh ($sel->can_read(0.1)) {
            my ($i) = grep { $s[$_] == $fh } keys %open;
            next unless defined $i;
            my $n = sysread($fh, $buf[$i], 65536, length $buf[$i]);
            next if !defined $n && $!{EAGAIN};
            if (!$n) {
                $done[$i] = time - $t0;
                delete $open{$i};
                $sel->remove($fh);
                close $fh;
            }
        }
    }
    close $s[$_] for keys %open;
    return map {
        my $r = parse_response($buf[$_]);
        $r->{elapsed} = $done[$_] // 99;
        $r->{who} = $r->{headers}{'x-backend'} // 'none';
        $r->{status} //= 'none';
        $r
    } 0 .. $#s;
}

# hits($name, $re): the requests backend NAME logged whose target matches
# qr/^$re/, as [ time, target, body length ].
sub hits {
    my ($name, $re) = @_;
    my @h;
    for (split /\n/, $t->daemon_log($backend{$name})) {
        next unless /^req $name \d+ ([\d.]+) \S+ (\S+) body=(\d+)$/;
        my ($time, $target, $body) = ($1, $2, $3);
        push @h, [ $time, $target, $body ] if $target =~ /^$re/;
    }
    return @h;
}
sub nhits { scalar(my @h = hits(@_)) }

sub tally {
    my %n;
    $n{$_}++ for @_;
    return join ' ', map { "$_=$n{$_}" } sort keys %n;
}

# Waits until the backends have logged |n| requests for |re| (a backend
# logs before it answers, but meshgate may be done with the client first).
sub settle {
    my ($re, $n) = @_;
    waitfor(sub { nhits('A', $re) + nhits('B', $re) + nhits('C', $re) >= $n },
        3);
}

###########################################################################
# 1. Retry on 5xx: A answers 503, B 200.

{
    my @r = map { get('r5xx', "/t1r-$_?A=503") } 1 .. 20;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=20',
        'retry on 5xx: 20 GETs all get 200 from the good endpoint')
        or diag(tally(map { "$_->{status}/$_->{who}" } @r));
    is(nhits('B', '/t1r-'), 20, 'retry on 5xx: B got each request once');
    my @ha = hits('A', '/t1r-');
    my %ua = map { ($_->[1] => 1) } @ha;
    ok(@ha >= 1 && @ha <= 20, 'retry on 5xx: A was tried (' . scalar(@ha)
        . ' times)');
    is(scalar(keys %ua), scalar(@ha), 'retry on 5xx: no request went to A '
        . 'twice');
    my $pa = addr('A');
    my $att = qr/\(attempt 2 of 3\), cluster: r5xx,/;
    like($t->log, qr/upstream \Q$pa\E answered 503, retrying $att/,
        'retry on 5xx: the retry is logged at info');

    @r = map { get('only5xx', "/t1o-$_?A=503") } 1 .. 10;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=10',
        'retry on = [ "5xx" ] alone (no connect-failure) retries too')
        or diag(tally(map { "$_->{status}/$_->{who}" } @r)
            . ', body of the first: ' . $r[0]{body});

    @r = map { get('plain', "/t1n-$_?A=503") } 1 .. 20;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=10 503/A=10',
        'default retry policy: the 503s of A reach the client')
        or diag(tally(map { "$_->{status}/$_->{who}" } @r));
    is(nhits('A', '/t1n-') + nhits('B', '/t1n-'), 20,
        'default retry policy: one upstream request per client request');
    @r = map { get('r5xx', "/t1f-$_?A=500") } 1 .. 6;
    is(tally(map { $_->{status} } @r), '200=6', '5xx covers 500 too');
}

###########################################################################
# 2. retriable-status and gateway-error.

{
    my @r = map { get('r409', "/t2a-$_?A=409") } 1 .. 10;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=10',
        'retriable-status: a listed 409 is retried')
        or diag(tally(map { "$_->{status}/$_->{who}" } @r));

    @r = map { get('r409only', "/t2o-$_?A=409") } 1 .. 10;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=10',
        'retriable-status alone in "on" (no connect-failure) is retried')
        or diag(tally(map { "$_->{status}/$_->{who}" } @r)
            . ', body of the first: ' . $r[0]{body});

    @r = map { get('r410', "/t2b-$_?A=409") } 1 .. 10;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=5 409/A=5',
        'retriable-status: 409 is not retried when only 410 is listed');
    is(nhits('A', '/t2b-') + nhits('B', '/t2b-'), 10,
        'retriable-status: one upstream request each when not listed');

    @r = map { get('rgw', "/t2c-$_?A=500") } 1 .. 10;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=5 500/A=5',
        'gateway-error: a 500 is not retried');
    for my $st (502, 503, 504) {
        @r = map { get('rgw', "/t2d$st-$_?A=$st") } 1 .. 6;
        is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=6',
            "gateway-error: a $st is retried");
    }
}

###########################################################################
# 3. attempts count every try, and a retry never goes to an endpoint the
# request already tried.

# The backends that request PREFIX1 .. PREFIXn reached, in time order.
sub per_request {
    my ($prefix, $n) = @_;
    my %by;
    for my $b (qw(A B C)) {
        for my $h (hits($b, $prefix)) {
            my ($id) = $h->[1] =~ /^\Q$prefix\E(\d+)\?/ or next;
            push @{$by{$id}}, [ $h->[0], $b ];
        }
    }
    return map {
        [ map { $_->[1] } sort { $a->[0] <=> $b->[0] } @{$by{$_} || []} ]
    } 1 .. $n;
}

{
    my $q = '?A=503&B=503&C=503';
    my @r = map { get('ratt2', "/t3a-$_$q") } 1 .. 10;
    is(tally(map { $_->{status} } @r), '503=10',
        'attempts = 2, every endpoint failing: the client gets the 503');
    settle('/t3a-', 20);
    my @per = per_request('/t3a-', 10);
    is(tally(map { scalar @$_ } @per), '2=10',
        'attempts = 2: exactly 2 upstream requests per client request')
        or diag(join ' ', map { join '', @$_ } @per);
    is(scalar(grep { $_->[0] ne ($_->[1] // '') } @per), 10,
        'attempts = 2: the two tries went to two different endpoints')
        or diag(join ' ', map { join '', @$_ } @per);
    is(scalar(grep { $r[$_]{who} eq ($per[$_][-1] // '') } 0 .. 9), 10,
        'attempts = 2: the client gets the answer of the last try')
        or diag(join ' ', map { "$_->{who}" } @r);

    @r = map { get('ratt3', "/t3b-$_$q") } 1 .. 5;
    settle('/t3b-', 15);
    @per = per_request('/t3b-', 5);
    is(tally(map { join '', sort @$_ } @per), 'ABC=5',
        'attempts = 3 over 3 failing endpoints: each tried exactly once');

    @r = map { get('rattleft', "/t3c-$_?A=503&B=503") } 1 .. 5;
    settle('/t3c-', 10);
    @per = per_request('/t3c-', 5);
    is(tally(map { join '', sort @$_ } @per), 'AB=5',
        'attempts = 3 over 2 endpoints: 2 tries, none twice on one endpoint');
    is(tally(map { $_->{status} } @r), '503=5',
        'attempts = 3 over 2 endpoints: the last answer goes to the client');
}

# A retry goes to the next endpoint in the balancer's order: with A
# failing, its retries spread over B and C like any other traffic.
{
    my @r = map { get('rspread', "/t3s-$_?A=503") } 1 .. 30;
    is(tally(map { $_->{status} } @r), '200=30',
        'retries over 3 endpoints: all succeed');
    my ($b, $c) = (nhits('B', '/t3s-'), nhits('C', '/t3s-'));
    ok($b >= 8 && $c >= 8, 'retries of the requests A failed are balanced '
        . "over B and C (B=$b C=$c)");
}

# Retries go only to healthy endpoints: B fails its health check (but
# would answer this request).
{
    my $pb = addr('B');
    ok($t->waitforlog(qr/health check: endpoint \Q$pb\E of cluster /
        . qr/rhealth is now unhealthy/, timeout => 5),
        'B of rhealth is unhealthy');
    my @r = map { get('rhealth', "/t3h-$_?A=503") } 1 .. 6;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '503/A=6',
        'no retry on an unhealthy endpoint: the 503 of A is the answer');
    is(nhits('B', '/t3h-'), 0, 'the unhealthy endpoint got no retry');
}

###########################################################################
# 4. reset: A closes (or resets) the connection without answering.

{
    my @r = map { get('rreset', "/t4a-$_?A=drop") } 1 .. 10;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=10',
        'retry on reset: a dropped request succeeds on the other endpoint');
    ok(nhits('A', '/t4a-') >= 5, 'retry on reset: A did get requests');
    @r = map { get('rreset', "/t4b-$_?A=reset") } 1 .. 10;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=10',
        'retry on reset: a TCP reset is retried too');

    @r = map { get('noreset', "/t4c-$_?A=drop") } 1 .. 10;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=5 502/none=5',
        'without reset in "on" the client gets 502 for a dropped request')
        or diag(tally(map { "$_->{status}/$_->{who}" } @r));
    is(nhits('A', '/t4c-') + nhits('B', '/t4c-'), 10,
        'without reset: no request was sent twice');
}

# A retry that meets a stale pooled connection (B closes it after
# answering keep-alive) goes on a fresh connection, not back to A.
{
    my $q = '?A=503&B=kaclose-400';
    my $r1 = get('rstale', "/t4s-1$q");
    is("$r1->{status}/$r1->{who}", '200/B', 'stale pool: B answers the retry '
        . 'and keeps the connection for 0.4 s');
    my $r2 = get('rstale', "/t4s-2$q");
    settle('/t4s-2', 2);
    sleep 0.2;
    my @per = per_request('/t4s-', 2);
    is("$r2->{status}/$r2->{who}", '200/B', 'stale pool: the retry that '
        . 'found B\'s pooled connection closed still gets B\'s answer')
        or diag("tries of the second request: @{$per[1]}");
    is(nhits('A', '/t4s-2'), 1, 'stale pool: A is not tried twice');
}

###########################################################################
# 5. per_try_timeout: A answers after 2 s.

{
    my @r = map { get('rpertry', "/t5a-$_?A=delay-2000") } 1 .. 6;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=6',
        'per_try_timeout 0.3 with gateway-error: every request succeeds');
    my $max = 0;
    $_->{elapsed} > $max and $max = $_->{elapsed} for @r;
    cmp_ok($max, '<', 1.2, 'per_try_timeout 0.3: each well under 2 s');
    my $a = nhits('A', '/t5a-');
    ok($a >= 3, "per_try_timeout: A was tried first ($a times)");
    my $pa = addr('A');
    like($t->log, qr/upstream \Q$pa\E timed out, retrying.* cluster: rpertry,/,
        'per_try_timeout: the retry is logged');

    @r = parallel('rslow', map { "/t5b-$_?A=delay-2000" } 1 .. 2);
    my ($slow) = grep { $_->{who} eq 'A' } @r;
    ok($slow && $slow->{status} eq '200' && $slow->{elapsed} >= 1.9,
        'without per_try_timeout the client waits for the slow endpoint')
        or diag(join ' ', map { "$_->{status}/$_->{who}/$_->{elapsed}" } @r);

    @r = map { get('rpertry1', "/t5c-$_?A=delay-2000") } 1 .. 2;
    my ($to) = grep { $_->{status} ne '200' } @r;
    ok($to && $to->{status} eq '504' && $to->{elapsed} < 1.5,
        'per_try_timeout without gateway-error in "on": 504 after the '
        . 'per-try timeout, not retried')
        or diag(join ' ', map { "$_->{status}/$_->{who}/$_->{elapsed}" } @r);
    is(nhits('A', '/t5c-') + nhits('B', '/t5c-'), 2,
        'per_try_timeout without gateway-error: one upstream request each');
}

###########################################################################
# 6. A body that left the 16 KiB buffer is not replayed.

{
    my $q = '?A=503&B=503';
    my $r = post('rbody', "/t6a$q", 'x' x (100 * 1024));
    is($r->{status}, 503, 'POST of 100 KiB answered 503');
    settle('/t6a', 1);
    sleep 0.3;
    is(nhits('A', '/t6a') + nhits('B', '/t6a'), 1,
        'a POST whose 100 KiB body left the buffer is not retried');

    $r = post('rbody', "/t6b$q", 'y' x 100);
    is($r->{status}, 503, 'POST of 100 bytes answered 503');
    settle('/t6b', 2);
    my @h = (hits('A', '/t6b'), hits('B', '/t6b'));
    is(scalar(@h), 2, 'a POST with a small body is retried');
    is(tally(map { $_->[2] } @h), '100=2',
        'the retried POST carried its whole body both times');

    $r = post('rbody', "/t6c$q", 'z' x (10 * 1024));
    settle('/t6c', 2);
    @h = (hits('A', '/t6c'), hits('B', '/t6c'));
    is(tally(map { $_->[2] } @h), '10240=2',
        'a 10 KiB body (inside the buffer) is retried whole');
}

###########################################################################
# 7. Outlier detection.

{
    my $pa = addr('A');
    my $off = $t->log_offset;
    # A fails: after its third 503 in a row it is ejected.
    my $n = 0;
    while (nhits('A', '/t7a-') < 3 && $n < 10) {
        $n++;
        get('rout', "/t7a-$n?A=503");
    }
    my $t_eject = time;
    is(nhits('A', '/t7a-'), 3, 'outlier: A got its 3 failing requests');
    my $line = $t->waitforlog(qr/outlier detection: endpoint \Q$pa\E of /
        . qr/cluster rout ejected for 2\.0 s after 3 consecutive 5xx /
        . qr/\(ejection 1\)/, since => $off, timeout => 2);
    ok($line, 'outlier: the ejection is logged');
    like($t->log(since => $off),
        qr/\[notice\].*outlier detection: endpoint \Q$pa\E of cluster rout /,
        'outlier: at notice level');

    my @r = map { get('rout', "/t7b-$_?A=503") } 1 .. 20;
    my $took = time - $t_eject;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=20',
        'outlier: while A is ejected all 20 requests go to B');
    is(nhits('A', '/t7b-'), 0, 'outlier: the ejected endpoint got nothing');
    cmp_ok($took, '<', 2, 'outlier: (those 20 were sent within the '
        . 'ejection time)');

    # After 2 s A takes traffic again; 3 more failures eject it for 4 s.
    sleep(2.3 - (time - $t_eject)) if time - $t_eject < 2.3;
    $off = $t->log_offset;
    @r = map { get('rout', "/t7c-$_?A=503") } 1 .. 6;
    is(nhits('A', '/t7c-'), 3,
        'outlier: once the ejection time passed, A gets traffic again');
    ok($t->waitforlog(qr/endpoint \Q$pa\E of cluster rout ejected for /
        . qr/4\.0 s after 3 consecutive 5xx \(ejection 2\)/, since => $off,
        timeout => 2), 'outlier: the second ejection lasts base x 2 = 4 s');

    # Gateway failures: resets count, 500s do not.
    $off = $t->log_offset;
    get('routgw', "/t7d-$_?A=500") for 1 .. 10;
    unlike($t->log(since => $off), qr/cluster routgw ejected/,
        'outlier: 500s are not gateway failures');
    get('routgw', "/t7e-$_?A=drop") for 1 .. 4;
    ok($t->waitforlog(qr/endpoint \Q$pa\E of cluster routgw ejected for /
        . qr/2\.0 s after 2 consecutive gateway failures/, since => $off,
        timeout => 2), 'outlier: 2 dropped connections in a row eject A');
    @r = map { get('routgw', "/t7f-$_?A=drop") } 1 .. 6;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=6',
        'outlier: then A, ejected, gets no request');

    # The ejection time grows with each ejection up to max_ejection_time.
    $off = $t->log_offset;
    $n = 0;
    get('routcap', '/t7k-' . ++$n . '?A=503')
        until $t->log(since => $off) =~ /cluster routcap ejected/ || $n > 10;
    my $re = 'ejected for 1\.0 s after 2 consecutive 5xx \(ejection 1\)';
    like($t->log(since => $off), qr/endpoint \Q$pa\E of cluster routcap $re/,
        'outlier: first ejection for base_ejection_time');
    sleep 1.2;
    $off = $t->log_offset;
    $n = 0;
    get('routcap', '/t7l-' . ++$n . '?A=503')
        until $t->log(since => $off) =~ /cluster routcap ejected/ || $n > 10;
    $re = 'ejected for 1\.5 s after 2 consecutive 5xx \(ejection 2\)';
    like($t->log(since => $off), qr/endpoint \Q$pa\E of cluster routcap $re/,
        'outlier: the second, 2 x base, is capped by max_ejection_time');

    # max_ejection_percent 10 of 2 endpoints: one may always go, not two.
    $off = $t->log_offset;
    my $t0 = time;
    @r = map { get('rout2', "/t7g-$_?A=503&B=503") } 1 .. 12;
    my $log = $t->log(since => $off);
    my $ejected = () = $log =~ /cluster rout2 ejected/g;
    cmp_ok(time - $t0, '<', 1.8, '(those 12 requests took less than the '
        . 'ejection time)');
    is($ejected, 1, 'outlier: with both endpoints failing only one of 2 is '
        . 'ejected (max_ejection_percent 10)') or diag($log);
    ok(nhits('B', '/t7g-') >= 7, 'outlier: the other one keeps taking '
        . 'requests');

    # max_ejection_percent 50 of 3 endpoints: 1 (33 %) may go, 2 (67 %) not.
    $off = $t->log_offset;
    $t0 = time;
    @r = map { get('rout3', "/t7h-$_?A=503&B=503&C=503") } 1 .. 15;
    $log = $t->log(since => $off);
    $ejected = () = $log =~ /cluster rout3 ejected/g;
    cmp_ok(time - $t0, '<', 1.8, '(those 15 requests took less than the '
        . 'ejection time)');
    is($ejected, 1, 'outlier: max_ejection_percent 50 of 3 endpoints ejects '
        . 'at most one at a time') or diag($log);
}

###########################################################################
# 8. Circuit breakers.

{
    my $off = $t->log_offset;
    my @r = parallel('cbreq', map { "/t8a-$_?A=delay-1000" } 1 .. 5);
    my @ok = grep { $_->{status} eq '200' } @r;
    my @over = grep { $_->{status} eq '503' } @r;
    is(scalar(@ok) . '/' . scalar(@over), '2/3',
        'max_requests = 2: of 5 concurrent requests 2 pass, 3 get 503')
        or diag(join ' ', map { "$_->{status}/$_->{elapsed}" } @r);
    is(scalar(grep { $_->{elapsed} < 0.5 } @over), scalar(@over),
        'max_requests: the overflows are answered at once')
        or diag(join ' ', map { "$_->{status}/$_->{elapsed}" } @r);
    is(scalar(grep { ($_->{headers}{'x-meshgate-error'} // '') eq 'overflow'
        } @over), scalar(@over), 'max_requests: x-meshgate-error: overflow');
    is(scalar(grep { $_->{body} =~ /max_requests/ } @over), scalar(@over),
        'max_requests: the body names the breaker') or diag($over[0]{body});
    is(nhits('A', '/t8a-'), 2, 'max_requests: only 2 reached the upstream');
    my $cbre = qr/\[info\].*circuit breaker max_requests of /;
    my $n = () = $t->log(since => $off)
        =~ /${cbre}cluster cbreq \(level 0\) is open/g;
    is($n, 3, 'max_requests: each overflow is logged at info');
    ok(scalar(@ok) == 2 && $ok[0]{elapsed} >= 0.9,
        'max_requests: the 2 that passed waited for the upstream');

    # An overflow leaves a keep-alive client connection usable.
    my @slow = map {
        http("GET /t8k-$_?A=delay-800 HTTP/1.1\r\nHost: cbreq.test\r\n"
            . "Connection: close\r\n\r\n", start => 1)
    } 1 .. 2;
    settle('/t8k-', 2);
    my $c = Test::Meshgate::Client->new(port => port(8000));
    my $r = $c->get('/t8k-ka', host => 'cbreq.test');
    is($r && $r->{status}, 503, 'keep-alive client: overflow while 2 are in '
        . 'flight');
    for my $s (@slow) {
        my $raw = http(undef, socket => $s, timeout => 5);
        like($raw, qr{^HTTP/1\.1 200 }, 'keep-alive client: a slow one '
            . 'passed');
    }
    $r = $c->get('/t8k-ka2', host => 'cbreq.test');
    is($r && $r->{status}, 200, 'keep-alive client: the same connection '
        . 'serves its next request once the breaker closes');
    $c->close;

    # max_connections = 1 with a keep-alive upstream.
    $off = $t->log_offset;
    @r = parallel('cbconn', map { "/t8b-$_?A=delay-1000" } 1 .. 2);
    is(tally(map { $_->{status} } @r), '200=1 503=1',
        'max_connections = 1: of two concurrent slow requests one overflows')
        or diag(join ' ', map { "$_->{status}/$_->{elapsed}" } @r);
    my ($o) = grep { $_->{status} eq '503' } @r;
    ok($o && ($o->{headers}{'x-meshgate-error'} // '') eq 'overflow'
        && $o->{body} =~ /max_connections/ && $o->{elapsed} < 0.5,
        'max_connections: an immediate overflow naming max_connections');
    my $cbc = qr/\[info\].*circuit breaker max_connections of cluster /;
    like($t->log(since => $off), qr/${cbc}cbconn \(level 0\) is open/,
        'max_connections: the overflow is logged at info');
    @r = map { get('cbconn', "/t8c-$_") } 1 .. 4;
    is(tally(map { $_->{status} } @r), '200=4',
        'max_connections = 1: sequential requests reuse the one connection');

    # max_retries = 1: while one request is being retried, no other is.
    $off = $t->log_offset;
    @r = parallel('cbretry',
        map { "/t8d-$_?A=delay-500-503&B=delay-500-503&C=delay-500-503" }
        1 .. 4);
    settle('/t8d-', 5);
    sleep 0.5;
    my @per = per_request('/t8d-', 4);
    is(scalar(grep { @$_ == 2 } @per), 1,
        'max_retries = 1: of 4 concurrent failing requests one is retried')
        or diag(join ' ', map { join '', @$_ } @per);
    is(tally(map { $_->{status} } @r), '503=4',
        'max_retries: every client gets a 503');
    my @xo = grep { ($_->{headers}{'x-meshgate-error'} // '') eq 'overflow' }
        @r;
    # Like the budget: the answer it had, not an overflow of our own.
    is(scalar(@xo), 0, 'max_retries: a request that may not be retried '
        . 'gets the upstream\'s answer, not an overflow 503');
}

###########################################################################
# 9. The retry budget.

{
    my $off = $t->log_offset;
    my $q = '?A=delay-500-503&B=delay-500-503';
    my @r = parallel('rbudget', map { "/t9a-$_$q" } 1 .. 10);
    settle('/t9a-', 13);
    sleep 0.3;
    my @per = per_request('/t9a-', 10);
    my $retried = grep { @$_ == 2 } @per;
    is($retried, 3, 'budget = 0: of 10 concurrent failing requests 3 (the '
        . 'minimum) are retried') or diag(join ' ', map { join '', @$_ } @per);
    is(nhits('A', '/t9a-') + nhits('B', '/t9a-'), 10 + $retried,
        'budget: no request was tried more than twice');
    like($t->log(since => $off),
        qr/\[info\].*retry budget of cluster rbudget exhausted/,
        'budget: the exhausted budget is logged');
    is(tally(map { $_->{status} } @r), '503=10',
        'budget: the requests not retried get their answer as it is');
    is(scalar(grep { defined $_->{headers}{'x-meshgate-error'} } @r), 0,
        'budget: no overflow answer');

    # budget = 0.5 of 20 concurrent requests: more than 3, at most 10.
    @r = parallel('rbudget5', map { "/t9b-$_$q" } 1 .. 20);
    settle('/t9b-', 23);
    sleep 0.3;
    @per = per_request('/t9b-', 20);
    $retried = grep { @$_ == 2 } @per;
    ok($retried > 3 && $retried <= 10, 'budget = 0.5 of 20 active requests: '
        . "more than the minimum 3, at most 10 retried ($retried)");

    # Backoff: random below backoff x 2^(n-1), capped by max_backoff.
    @r = map { get('rcap', "/t9c-$_?A=503") } 1 .. 6;
    my $max = 0;
    $_->{elapsed} > $max and $max = $_->{elapsed} for @r;
    is(tally(map { $_->{status} } @r), '200=6', 'backoff: retried');
    cmp_ok($max, '<', 0.6, 'backoff 5 s is capped by max_backoff 0.2');

    @r = map { get('rjitter', "/t9d-$_?A=503") } 1 .. 10;
    my @el = sort { $a <=> $b } map { $_->{elapsed} } @r;
    cmp_ok($el[-1], '<', 0.8, 'backoff 0.4: no retry waits longer')
        or diag("@el");
    cmp_ok($el[-1], '>', 0.05, 'backoff 0.4: retries do wait (random)')
        or diag("@el");
}

###########################################################################
# 10. Bookkeeping: requests that failed, were retried, timed out or were
# given up by their client leave no count behind (retries in progress for
# the budget, requests in flight for max_requests).

{
    my $q = 'B=delay-1500';
    my @kinds = ('A=503', 'A=drop', 'A=reset', 'A=delay-1000');
    for my $i (0 .. 7) {
        my $s = http("GET /t10a-$i?$kinds[$i % 4]&$q HTTP/1.1\r\n"
            . "Host: rleak.test\r\nConnection: close\r\n\r\n", start => 1);
        sleep 0.15 + 0.1 * ($i % 3);
        close $s if $s;    # in the backoff, or waiting for B
        sleep 0.8 if $i % 2;    # B times out, max_requests stays clear
    }
    sleep 1.0;
    my $off = $t->log_offset;
    my @r = map { get('rleak', "/t10b-$_?A=503") } 1 .. 8;
    is(tally(map { "$_->{status}/$_->{who}" } @r), '200/B=8',
        'after abandoned retries, retries still happen (no budget leak)')
        or diag($t->log(since => $off));
    unlike($t->log(since => $off), qr/retry budget of cluster rleak/,
        'no "retry budget exhausted" for an idle cluster');
    @r = parallel('rleak', map { "/t10c-$_?A=delay-150&B=delay-150" } 1 .. 2);
    is(tally(map { $_->{status} } @r), '200=2',
        'max_requests = 2: two concurrent requests still pass (no count '
        . 'left in flight)');
    ok($t->is_running && get('r5xx', '/t10d?A=503')->{status} eq '200',
        'meshgate still serves after abandoned retries');
}

###########################################################################
# 11. With 2 workers each enforces ceil(limit / 2) of a breaker.

{
    my $t2 = Test::Meshgate->new;
    $t2->write_conf(<<"EOF");
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8100%%";
                routes = "mesh"; } );
routes = { mesh = (
    { domains = [ "split.test" ]; prefix = "/"; cluster = "split"; } ); };
clusters = (
    { name = "split"; endpoints = ( { address = "${\addr('A')}"; } );
      circuit_breakers = { max_requests = 3; }; } );
EOF
    $t2->run;
    my @s = map {
        http("GET /t11-$_?A=delay-1000 HTTP/1.1\r\nHost: split.test\r\n"
            . "Connection: close\r\n\r\n", start => 1, port => port(8100))
    } 1 .. 8;
    my @st = map {
        my $r = parse_response(http(undef, socket => $_, timeout => 5));
        $r->{status} // 'none'
    } @s;
    my $pass = grep { $_ eq '200' } @st;
    my $over = grep { $_ eq '503' } @st;
    is($pass + $over, 8, '2 workers: every request answered, 200 or 503')
        or diag("@st");
    ok($pass >= 2 && $pass <= 4, '2 workers, max_requests = 3: each worker '
        . "lets 2 through, so 2 to 4 of 8 pass ($pass)");
    my @w = $t2->log =~ /worker (\d+): circuit breaker max_requests/g;
    ok(scalar(@w) >= 4, 'the overflows are logged by the workers');
    $t2->stop_and_check;
}

$t->stop_and_check;
done_testing();
