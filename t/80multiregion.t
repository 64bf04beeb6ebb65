#!/usr/bin/perl

# Multi-region: three regions (a, b, c), each a network namespace with its
# own meshgate and "users" backends, joined through delay relays (20 ms
# one way). Local traffic stays local; when local endpoints fail, traffic
# spills to the next region's front proxy over mutually authenticated
# HTTP/2, marked with x-meshgate-origin / x-meshgate-hops, and is never
# forwarded a second time; strangers are refused at the peering listener;
# outside clients can neither forge the marks nor reach internal routes.
# Needs root (network namespaces); skips otherwise.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;
use Test::Regions;

my $DELAY = 20;             # ms, one way, per relay
my $HC = 0.5;               # health-check interval of the configuration
my $r = Test::Regions->new(regions => [qw(a b c)], delay_ms => $DELAY,
    peering_port => 8443);
my @R = $r->names;
my %t = map { $_ => $r->meshgate($_) } @R;    # skips without the binary

# The configuration of region $me, in the shape of the multi-region
# design: every other region is an out-of-zone member, in name order.
sub conf {
    my ($me) = @_;
    my @others = grep { $_ ne $me } @R;
    my $regions = join ",\n", map {
        my $o = $_;
        my $via = $r->link_addr($me, $o);
        qq{    { name = "$o"; front_proxy = "$via";
      tls = { ca = "mesh-ca.crt"; cert = "gw-$me.crt"; key = "gw-$me.key";
              sni = "gw.$o.mesh"; }; }}
    } @others;
    my $ooz = join ', ', map { qq{"$_"} } @others;
    my $addr = $r->addr($me);
    return <<"EOF";
gateway = { region = "$me"; zone = "${me}1"; workers = 2;
            drain_timeout = 1.0; };
regions = (
$regions );
listeners = (
    { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh";
      access_log = "%%TESTDIR%%/mesh-access.log"; },
    { name = "peering"; listen = "$addr:%%PORT_8443%%"; peering = true;
      routes = "mesh"; access_log = "%%TESTDIR%%/peering-access.log";
      tls = { certificates = ( { cert = "gw-$me.crt"; key = "gw-$me.key"; } );
              client_ca = "mesh-ca.crt"; verify_client = "required";
              alpn = [ "h2" ]; }; },
    { name = "public"; listen = "127.0.0.1:%%PORT_8080%%"; public = true;
      routes = "mesh"; access_log = "%%TESTDIR%%/public-access.log"; } );
routes = { mesh = (
    { domains = [ "users" ]; prefix = "/"; cluster = "users"; },
    { domains = [ "ops" ]; prefix = "/"; cluster = "users"; internal = true; } ); };
clusters = (
    { name = "users"; out_of_zone = [ $ooz ];
      health_check = { path = "/healthz"; interval = $HC; timeout = 0.3;
                       healthy_threshold = 1; unhealthy_threshold = 2; };
      retry = { on = [ "connect-failure", "refused-stream", "reset", "5xx" ];
                attempts = 3; };
      endpoints = ( { address = "127.0.0.1:%%PORT_9001%%"; zone = "${me}1"; },
                    { address = "127.0.0.1:%%PORT_9002%%"; zone = "${me}1"; } ); } );
EOF
}

# Which backend answered ("a1", "b2", ...), else "status N" / the error.
sub who {
    my ($res) = @_;
    return 'none' unless $res;
    return $res->{headers}{'x-backend'} // "no x-backend"
        if $res->{status} == 200;
    return "status $res->{status}"
        . ($res->{error} ? " ($res->{error})" : '');
}

sub count {
    my %n;
    $n{$_}++ for @_;
    return \%n;
}

sub show { my $n = count(@_); join ' ', map { "$_=$n->{$_}" } sort keys %$n }

# One GET from inside $region to its own listener (mesh unless |port|).
sub get {
    my ($region, $path, %o) = @_;
    return $r->get($region, $path, port => $o{port} // port(8000),
        host => $o{host} // 'users', timeout => $o{timeout} // 10,
        headers => $o{headers} || []);
}

# curl from region $from straight to region $to's peering listener
# (through the relay, HTTP/2, verifying gw.$to.mesh), with the client
# certificate options in @opt and any other curl options after them.
sub peer_curl {
    my ($from, $to, $path, @opt) = @_;
    my $d = $r->dir;
    return $r->curl($from, '--http2', '--cacert', "$d/mesh-ca.crt", @opt,
        '--connect-to', "gw.$to.mesh:443:" . $r->link_addr($from, $to),
        '-H', 'Host: users', "https://gw.$to.mesh$path");
}

# The lines of region $reg's access log $file that have $path.
sub logged {
    my ($reg, $file, $path) = @_;
    return grep { /\Q$path\E[ "?]/ } split /\n/, $t{$reg}->read_file($file);
}

# The mark meshgate put on a request, as the backend echoed it.
sub mark {
    my ($body, $name) = @_;
    return $body =~ /^x-meshgate-$name:[ \t]*(.*?)\r?$/mi ? $1 : undef;
}

###########################################################################
# The test bed itself: a relay adds the delay in both directions.

my %be;    # backend name -> PID
for my $reg (@R) {
    $be{"${reg}1"} = $r->backend($reg, port => 9001, name => "${reg}1");
    $be{"${reg}2"} = $r->backend($reg, port => 9002, name => "${reg}2");
}

{
    my $plain = $r->backend('b', listen => $r->addr('b'), port => 9101,
        name => 'b-plain');
    my $via = $r->relay('a', 'b', port => port(9101));
    # A failed request counts as 0 s, failing the check.
    my @t = sort { $a <=> $b } map {
        my $c = $r->curl('a', "http://$via/x");
        ($c->{headers}{'x-backend'} // '') eq 'b-plain' ? $c->{time} : 0;
    } 1 .. 5;
    cmp_ok($t[0], '>=', 2 * $DELAY / 1000,
        "harness: a request a->b through the relay takes >= 2 x ${DELAY} ms")
        or diag("times: @t");
    my $direct = $r->curl('a', '--max-time', '2', 'http://' . $r->addr('b')
        . ':' . port(9101) . '/x');
    isnt($direct->{exit}, 0,
        'harness: region a cannot reach region b around the relay');
    $r->kill_pid($plain);
}

###########################################################################
# Start the three meshgates.

my $started = 1;
for my $reg (@R) {
    my $t = $t{$reg};
    $t->write_conf(conf($reg));
    my $ok = eval { $t->run; 1 };
    # The first line says why; the logs follow at teardown.
    ok($ok, "region $reg: meshgate starts with the multi-region configuration")
        or diag((split /\n/, $@)[0]);
    $started &&= $ok;
}

SKIP: {
    skip 'a meshgate did not start', 1 unless $started;

    # Health checks have run (first ones at start, then every $HC s) and
    # the peers' HTTP/2 connections can be set up: a few intervals.
    sleep 3 * $HC;

###########################################################################
# a. Local traffic stays local.

    {
        my @res = map { get('a', "/echo?a=$_") } 1 .. 100;
        my @who = map { who($_) } @res;
        is(scalar(grep { /^a[12]$/ } @who), 100,
            'a: 100 requests to region a are all answered by a1/a2')
            or diag(show(@who));
        my $n = count(@who);
        ok(($n->{a1} // 0) >= 20 && ($n->{a2} // 0) >= 20,
            'a: both local endpoints take a share') or diag(show(@who));
        is(scalar(grep { defined mark($_->{body}, 'origin')
            || defined mark($_->{body}, 'hops') } @res), 0,
            'a: local requests carry no x-meshgate-origin / -hops');
    }

###########################################################################
# f. Outside clients cannot forge the marks nor reach internal routes.

    {
        my @forged = ('X-Meshgate-Origin: c', 'X-Meshgate-Hops: 0');
        for my $l ([ mesh => 8000 ], [ public => 8080 ]) {
            my $res = get('a', '/echo?f=1', port => port($l->[1]),
                headers => \@forged);
            is($res->{status}, 200, "f: $l->[0] listener serves users");
            ok(!defined mark($res->{body}, 'origin')
                && !defined mark($res->{body}, 'hops'),
                "f: x-meshgate-origin/-hops from a client on the $l->[0]"
                . ' listener do not reach the backend')
                or diag($res->{body});
        }
        my $pub = get('a', '/ops', host => 'ops', port => port(8080));
        is($pub->{status}, 404, 'f: internal route "ops" is 404 on the '
            . 'public listener') or diag(who($pub));
        my $mesh = get('a', '/ops', host => 'ops');
        is($mesh->{status}, 200, 'f: internal route "ops" is 200 on the '
            . 'mesh listener');
        like(who($mesh), qr/^a[12]$/, 'f: ... served by a local backend');
    }

###########################################################################
# g (local part). A local request is far faster than the link's delay.

    my $local_ms;
    {
        my @t = sort { $a <=> $b } map {
            my $c = $r->curl('a', '-H', 'Host: users',
                'http://127.0.0.1:' . port(8000) . "/g$_");
            $c->{status} == 200 ? $c->{time} : 9;
        } 1 .. 7;
        $local_ms = 1000 * $t[3];
        note(sprintf 'local request times (ms): %s',
            join ' ', map { sprintf '%.1f', 1000 * $_ } @t);
        cmp_ok($local_ms, '<', $DELAY,
            "g: a local request takes less than one ${DELAY} ms delay"
            . ' (median of 7)') or diag("times: @t");
    }

###########################################################################
# e. Only mesh certificates get through a peering listener.

    {
        my $d = $r->dir;
        my $s = peer_curl('a', 'b', '/e-stranger', '--cert',
            "$d/stranger.crt", '--key', "$d/stranger.key");
        ok($s->{exit} != 0 && $s->{status} == 0,
            "e: a client certificate from another CA is refused at b's"
            . ' peering listener (TLS handshake)')
            or diag("curl exit $s->{exit}, status $s->{status}: "
                . "$s->{stderr}");
        my $n = peer_curl('a', 'b', '/e-nocert');
        ok($n->{exit} != 0 && $n->{status} == 0,
            "e: a client without a certificate is refused at b's peering"
            . ' listener') or diag("curl exit $n->{exit}, status "
                . "$n->{status}: $n->{stderr}");
        my $m = peer_curl('a', 'b', '/e-mesh', '--cert', "$d/gw-a.crt",
            '--key', "$d/gw-a.key");
        is($m->{status}, 200,
            'e: a client with the mesh certificate gw.a.mesh gets through')
            or diag("curl exit $m->{exit}: $m->{stderr}");
        like($m->{headers}{'x-backend'} // '', qr/^b[12]$/,
            "e: ... and is served by b's own backends");
        # Control for d: c's peering access log shows what reaches it.
        my $mc = peer_curl('a', 'c', '/e-control', '--cert', "$d/gw-a.crt",
            '--key', "$d/gw-a.key");
        is($mc->{status}, 200, "e: the same works at c's peering listener");
        ok(waitfor(sub {
            $t{c}->read_file('peering-access.log') =~ m{/e-control}
        }, 5), "e: c's peering access log records requests");
        ok(waitfor(sub {
            $t{b}->read_file('peering-access.log') =~ m{/e-mesh}
        }, 5), "e: b's peering access log has the mesh client's request");
        unlike($t{b}->read_file('peering-access.log'),
            qr{/e-(?:stranger|nocert)},
            "e: ... and none of the refused clients'");
    }

###########################################################################
# b. All local endpoints fail under load: no request fails, traffic moves
# to b, marked; back to a once they return.

    {
        my $h = $r->start_clients('a', clients => 2, count => 150,
            interval => 0.04, duration => 15, code => sub {
                my ($c, $i) = @_;
                my $raw = http_get("/echo?b=$c.$i", port => port(8000),
                    host => 'users', timeout => 10, quiet => 1);
                my $res = parse_response($raw);
                return { who => who({ %$res, status => $res->{status} // 0 }),
                    origin => mark($res->{body}, 'origin'),
                    hops => mark($res->{body}, 'hops') };
            });
        sleep 2;
        $r->kill_pid($be{$_}) for qw(a1 a2);
        my $killed = time;
        my $res = $r->wait_clients($h);
        my @who = map { $_->{who} } @$res;
        note('failover: ' . show(@who));
        is(scalar @$res, 300, 'b: the client loop sent 300 requests');
        is(scalar(grep { !/^[abc][12]$/ } @who), 0,
            'b: none failed while all of a\'s backends were killed')
            or diag(show(@who));
        my @before = grep { $_->{t1} < $killed - 0.1 } @$res;
        my @after = grep { $_->{t0} > $killed } @$res;
        ok(@before >= 20 && !grep({ $_->{who} !~ /^a[12]$/ } @before),
            'b: before that, region a answered')
            or diag(show(map { $_->{who} } @before));
        ok(@after >= 50 && !grep({ $_->{who} !~ /^b[12]$/ } @after),
            "b: after it, region b's backends answer all of them")
            or diag(scalar(@after) . ' after: '
                . show(map { $_->{who} } @after));
        my @fromb = grep { $_->{who} =~ /^b[12]$/ } @$res;
        ok(@fromb && !grep({ ($_->{origin} // '') ne 'a' } @fromb),
            'b: b\'s backends see x-meshgate-origin: a')
            or diag(show(map { $_->{origin} // 'none' } @fromb));
        ok(@fromb && !grep({ ($_->{hops} // '') ne '1' } @fromb),
            'b: b\'s backends see x-meshgate-hops: 1')
            or diag(show(map { $_->{hops} // 'none' } @fromb));

        # g (cross-region part), while a has no backend.
        my @t = sort { $a <=> $b } map {
            my $c = $r->curl('a', '-H', 'Host: users',
                'http://127.0.0.1:' . port(8000) . "/echo?g=$_");
            ($c->{headers}{'x-backend'} // '') =~ /^b/ ? $c->{time} : 0;
        } 1 .. 5;
        note(sprintf 'cross-region request times (ms): %s',
            join ' ', map { sprintf '%.1f', 1000 * $_ } @t);
        cmp_ok($t[0], '>=', 2 * $DELAY / 1000,
            "g: a cross-region request takes >= 2 x ${DELAY} ms")
            or diag("times: @t");
        cmp_ok(1000 * $t[0], '>', $local_ms + $DELAY,
            'g: ... far longer than a local one') or diag("times: @t");

        $be{$_} = $r->restart($be{$_}) for qw(a1 a2);
        my $back = time;
        my ($run, $took) = (0, undef);
        while (time - $back < 10) {
            my $w = who(get('a', '/echo?back'));
            $run = $w =~ /^a[12]$/ ? $run + 1 : 0;
            if ($run >= 10) {
                $took = time - $back;
                last;
            }
            sleep 0.05;
        }
        note(sprintf 'back in a after %.2f s', $took) if defined $took;
        ok(defined $took && $took <= 6 * $HC,
            'b: traffic is back in region a within 6 health-check '
            . 'intervals of the restart')
            or diag(defined $took ? sprintf('took %.2f s', $took)
                : 'not back after 10 s');
    }

###########################################################################
# c. Half of the local endpoints healthy: 1 - min(1, 1.4 x 0.5) = 30 % of
# requests spill to b.

    {
        $r->kill_pid($be{a2});
        # Marked down after unhealthy_threshold (2) failed checks.
        sleep 5 * $HC;
        my $h = $r->start_clients('a', clients => 5, count => 200,
            duration => 60, code => sub {
                my ($c, $i) = @_;
                my $raw = http_get("/c?$c.$i", port => port(8000),
                    host => 'users', timeout => 10, quiet => 1);
                my $res = parse_response($raw);
                return { who => who({ %$res,
                    status => $res->{status} // 0 }) };
            });
        my @who = map { $_->{who} } @{$r->wait_clients($h)};
        is(scalar @who, 1000, 'c: 1000 requests sent');
        is(scalar(grep { /^[abc][12]$/ } @who), 1000,
            'c: all answered') or diag(show(@who));
        my $n = count(@who);
        is($n->{a2} // 0, 0, 'c: none by the dead a2');
        my $b = ($n->{b1} // 0) + ($n->{b2} // 0);
        note('half healthy: ' . show(@who));
        ok($b >= 200 && $b <= 400,
            'c: 20-40 % go to region b (expected 30 %)')
            or diag(show(@who));
        is(($n->{c1} // 0) + ($n->{c2} // 0), 0,
            'c: none to region c (b takes all the spill-over)')
            or diag(show(@who));
    }

###########################################################################
# d. The service down everywhere: a quick 503 that says so, from b, which
# never forwards it to c.

    {
        $r->kill_pid($be{$_}) for qw(a1 b1 b2 c1 c2);
        sleep 5 * $HC;

        # What b answers a peer when it has nothing healthy: asked
        # directly, as a's meshgate would ask it.
        my $d = $r->dir;
        my $direct = sprintf '/d-direct-%d-%d', $$, int rand 1e6;
        my $p = peer_curl('a', 'b', $direct, '--cert', "$d/gw-a.crt",
            '--key', "$d/gw-a.key", '-H', 'x-meshgate-origin: a',
            '-H', 'x-meshgate-hops: 1');
        is($p->{status}, 503, 'd: b answers a peer 503 when no local '
            . 'endpoint is healthy') or diag("curl exit $p->{exit}: "
                . $p->{stderr});
        is($p->{headers}{'x-meshgate-error'}, 'no-healthy-local-endpoint',
            'd: ... with x-meshgate-error: no-healthy-local-endpoint');
        ok($p->{body} =~ /\bb\b/ && $p->{body} =~ /\busers\b/,
            'd: ... and a body naming region b and cluster users')
            or diag($p->{body});

        # The same through a's mesh listener.
        my $path = sprintf '/d-%d-%d', $$, int rand 1e6;
        my $res = get('a', $path);
        is($res->{status}, 503, 'd: a request to a with no healthy '
            . 'endpoint anywhere gets 503') or diag(who($res));
        cmp_ok($res->{elapsed}, '<', 5, 'd: within 5 s')
            or diag("took $res->{elapsed} s");

        my $src_a = $r->relay_source('a', 'b');
        my @atb;
        waitfor(sub { @atb = logged('b', 'peering-access.log', $path) }, 5);
        ok(grep({ /^\S+ \Q$src_a\E .* 503 / } @atb),
            "d: it went a->b: b's peering listener answered it 503")
            or diag(@atb ? join "\n", @atb : "not in b's peering log");
        # The access logs are flushed each second: give c's time too.
        sleep 1.5;
        my @atc = (logged('c', 'peering-access.log', $path),
            logged('c', 'peering-access.log', $direct));
        # Who sent it to c shows in the source address of c's log line.
        my $src_b = $r->relay_source('b', 'c');
        is(scalar(grep { /^\S+ \Q$src_b\E / } @atc), 0,
            'd: b never forwarded either request to c')
            or diag(join "\n", @atc);

        # The answer a's client gets is b's (the brief's reading of "the
        # answer is a 503 that says so"), and nothing reaches c at all.
        is($res->{headers}{'x-meshgate-error'}, 'no-healthy-local-endpoint',
            'd: the client gets x-meshgate-error: no-healthy-local-endpoint')
            or diag("body: $res->{body}a's mesh log: "
                . join("\n", logged('a', 'mesh-access.log', $path)));
        like($res->{body}, qr/\bb\b/, 'd: and a body naming region b')
            or diag($res->{body});
        like($res->{body}, qr/\busers\b/, 'd: and cluster users');
        is(scalar(grep { /\Q$path\E/ } @atc), 0,
            'd: c never saw the request (a did not try c after b\'s answer)')
            or diag(join "\n", @atc, "(from a's relay: "
                . $r->relay_source('a', 'c') . ')');
    }
}

for my $reg (grep { $t{$_} } @R) {
    note("region $reg: teardown check");
    $t{$reg}->stop_and_check;
}
done_testing();
