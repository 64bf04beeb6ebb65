#!/usr/bin/perl

# Dynamic endpoints from an xDS control plane (EDS, ADS; API v3 and v2),
# against a real one: t/xds/control-plane.js, Node with @grpc/grpc-js and
# Envoy's own .proto files. What the control plane saw of meshgate (Node,
# resource names, ACKs and NACKs, reconnects) and where requests go:
#
#   - config errors of `xds` and `discovery = "eds"` from `meshgate -t`;
#   - plain EDS v3: before the first answer a cluster has no endpoints (503,
#     or its out_of_zone region serves); the first answer is used by every
#     worker, shown by /clusters, /config_dump and the metrics, and ACKed
#     with its version and nonce;
#   - endpoints added, removed, moved to another priority and re-weighted,
#     and a reload, while 4 keep-alive clients send requests: no request
#     fails, and after each push every worker routes by the new set;
#   - a request in flight to an endpoint that is removed completes; with
#     max_endpoints = 1 the new endpoint that takes its slot then gets its
#     own traffic, and more endpoints than max_endpoints are NACKed;
#   - invalid updates (9 kinds) are NACKed (error_detail, the last good
#     version) and the last good endpoints keep serving;
#   - endpoints of another region and UNHEALTHY / DRAINING / TIMEOUT ones
#     are not picked; EDS localities come before out_of_zone regions;
#   - the control plane dies: meshgate keeps its endpoints, retries with
#     backoff, resubscribes with the last accepted version to the restarted
#     one and applies its new state;
#   - ADS with two clusters on one stream, ready_wait, the default node id
#     and cluster, MESHGATE_XDS_HOST / MESHGATE_XDS_PORT;
#   - API v2 (EDS and ADS), and EDS over mutual TLS; no stream when the
#     server's name or the client certificate does not verify.
#
# Needs node and t/xds/node_modules (tools/install-deps --test); skips
# without them unless CI is set.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP qw(decode_json encode_json);
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;
use Test::Metrics;

my $xds_dir = "$FindBin::Bin/xds";
my ($node) = grep { -x $_ } map { ("$_/node", "$_/nodejs") }
    split /:/, $ENV{PATH} // '';
{
    my $why = !$node ? 'node is not installed'
        : !-d "$xds_dir/node_modules/\@grpc/grpc-js-xds/deps/envoy-api"
            || !-d "$xds_dir/node_modules/\@grpc/proto-loader"
        ? "no $xds_dir/node_modules: run tools/install-deps --test" : undef;
    if ($why) {
        plan(skip_all => $why) unless $ENV{CI};
        # CI installs them: their absence there is a failure.
        plan(tests => 1);
        fail("the xDS control plane can run ($why)");
        exit 1;
    }
}

my $t = Test::Meshgate->new;
my $dir = $t->testdir;
my $T0 = time;

# backend name => port number
my %B = ((map { ("b$_" => 8080 + $_) } 1 .. 5), b6 => 8088);
my %bpid = map { $_ => $t->run_backend(port => $B{$_}, name => $_,
    verbose => $_ eq 'b1') } sort keys %B;
$t->run_backend(port => 8086, name => 'far');
sub addr { '127.0.0.1:' . port($B{$_[0]}) }

my $V3_EDS = '/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints';
my $V3_ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/'
    . 'StreamAggregatedResources';
my $V2_EDS = '/envoy.api.v2.EndpointDiscoveryService/StreamEndpoints';
my $V2_ADS = '/envoy.service.discovery.v2.AggregatedDiscoveryService/'
    . 'StreamAggregatedResources';
my $V3_TYPE = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
my $V2_TYPE = 'type.googleapis.com/envoy.api.v2.ClusterLoadAssignment';

###########################################################################
# The control plane

# start_cp(grpc => N, control => N, prefix => 'v', state => {...},
# tls => [cert, key, client CA]): starts control-plane.js on port(grpc) with its
# control API on port(control); returns its PID.
sub start_cp {
    my (%o) = @_;
    my ($g, $c) = ($o{grpc} // 8090, $o{control} // 8091);
    my @args = ('--port', port($g), '--control-port', port($c),
        '--version-prefix', $o{prefix} // 'v', '--watch-parent', '--verbose');
    if ($o{state}) {
        my $f = "$dir/cp-state-" . ($o{prefix} // 'v') . '.json';
        open my $fh, '>', $f or die "$f: $!\n";
        print $fh encode_json($o{state});
        close $fh;
        push @args, '--state', $f;
    }
    push @args, '--tls-cert', "$dir/$o{tls}[0]", '--tls-key',
        "$dir/$o{tls}[1]" if $o{tls};
    push @args, '--tls-client-ca', "$dir/$o{tls}[2]" if $o{tls} && $o{tls}[2];
    my $pid = $t->run_daemon($node, "$xds_dir/control-plane.js", @args);
    my $up = waitfor(sub {
        return 1 if $t->daemon_log($pid) =~ /^listening \d+ \d+$/m;
        return -1 if waitpid($pid, WNOHANG) == $pid;
        return 0;
    }, 30);
    die "control-plane.js did not start:\n" . $t->daemon_log($pid)
        unless $up && $up == 1;
    return $pid;
}

# cp(METHOD, PATH, BODY, port => N): one call of the control API; the
# decoded answer (dies on anything but 200).
sub cp {
    my ($method, $path, $body, %o) = @_;
    my $json = defined $body ? encode_json($body) : '';
    my $raw = http("$method $path HTTP/1.1\r\nHost: cp\r\n"
        . "Content-Type: application/json\r\nContent-Length: "
        . length($json) . "\r\nConnection: close\r\n\r\n$json",
        port => port($o{control} // 8091), timeout => 10, quiet => 1);
    my $r = parse_response($raw);
    die "control plane: $method $path: "
        . ($r->{status} ? "$r->{status} $r->{body}" : 'no answer') . "\n"
        unless ($r->{status} // 0) == 200;
    return decode_json($r->{body});
}

sub cp_state { cp('GET', '/state' . ($_[0] ? "?since=$_[0]" : ''), undef,
    @_[1 .. $#_]) }

# set(NAME => [ EP, ... ], ...): stores and pushes assignments; returns
# the version. EP: [ backend, key => value, ... ] or a hash.
sub set {
    my (%a) = @_;
    my %o = map { $_ => delete $a{$_} } grep { /^-/ } keys %a;
    my %as;
    for my $n (keys %a) {
        $as{$n} = [ map {
            ref $_ eq 'HASH' ? $_ : do {
                my ($b, %k) = @$_;
                { address => '127.0.0.1', port => port($B{$b}),
                  region => 'r1', zone => 'z1', %k };
            } } @{$a{$n}} ];
    }
    return cp('POST', '/set', { assignments => \%as },
        control => $o{-control})->{version};
}

# The streams of node |id| (all, or with service |svc|).
sub streams_of {
    my ($s, $id, $svc) = @_;
    return grep { $_->{node} && ($_->{node}{id} // '') eq $id
        && (!$svc || $_->{service} eq $svc) } @{$s->{streams}};
}

# The requests of node |id|'s streams that match |f| (key => value or
# qr//, or code).
sub requests_of {
    my ($s, $id, %f) = @_;
    my %mine = map { $_->{id} => 1 } streams_of($s, $id);
    return grep {
        my $q = $_;
        $mine{$q->{stream}} && !grep {
            my $v = $q->{$_};
            ref $f{$_} eq 'CODE' ? !$f{$_}->($q)
                : ref $f{$_} eq 'Regexp' ? !(defined $v && $v =~ $f{$_})
                : !(defined $v && $v eq $f{$_})
        } keys %f } @{$s->{requests}};
}

# wait_req(ID, %filter, timeout => S, control => N): the first request of
# node ID matching the filter, waiting for it; undef after the timeout.
sub wait_req {
    my ($id, %f) = @_;
    my $timeout = delete $f{timeout} // 5;
    my $control = delete $f{control};
    my $found;
    waitfor(sub {
        my $s = cp_state(0, control => $control);
        ($found) = requests_of($s, $id, %f);
        return $found ? 1 : 0;
    }, $timeout);
    return $found;
}

sub wait_ack {
    my ($id, $v, %o) = @_;
    return wait_req($id, kind => 'ack', acked_version => $v, %o);
}

###########################################################################
# meshgate helpers

# One request to the mesh listener for |host|; [status, backend or ''].
sub get {
    my ($host, $path) = @_;
    my $raw = http_get($path // '/', host => $host, timeout => 5, quiet => 1);
    my $r = parse_response($raw);
    return [ $r->{status} // 0, $r->{headers}{'x-backend'} // '' ];
}

# Which backends answer |n| requests for |host| (failures as "status N").
sub spread {
    my ($host, $n) = @_;
    my %c;
    for (1 .. $n) {
        my $r = get($host, "/spread/$_");
        $c{$r->[0] == 200 ? $r->[1] : "status $r->[0]"}++;
    }
    return \%c;
}

sub show { my ($c) = @_; join ' ', map { "$_=$c->{$_}" } sort keys %$c }

# Waits until a request for |host| reaches |backend| (the push arrived);
# 1 or 0.
sub wait_backend {
    my ($host, $backend, $timeout) = @_;
    return waitfor(sub { get($host, '/wait')->[1] eq $backend }, $timeout // 3)
        ? 1 : 0;
}

# One keep-alive client connection per worker slot: { slot => Client },
# found by opening connections 8 at a time and asking /proc which worker
# holds each (the rest are closed). worker_clients('NAME') keeps another
# such set.
my %wcs;
sub worker_clients {
    my ($set) = @_;
    my $wc = $wcs{$set // ''} //= {};
    my $want = 2;    # every configuration here has workers = 2
    for (grep { !$wc->{$_}->is_open } keys %$wc) { delete $wc->{$_} }
    for my $burst (1 .. 12) {
        last if keys %$wc >= $want;
        my @cs = grep { $_ } map {
            Test::Meshgate::Client->new(port => port(8000)) } 1 .. 8;
        $_->send("GET / HTTP/1.1\r\nHost: probe\r\n\r\n") for @cs;
        $_->read_response for @cs;
        my $ws = $t->worker_sockets(lport => port(8000));
        for my $slot (sort keys %$ws) {
            next if $wc->{$slot};
            for my $c (@cs) {
                next unless grep { $_->{rport} == $c->socket->sockport }
                    @{$ws->{$slot}};
                $wc->{$slot} = $c;
                last;
            }
        }
        my %kept = map { $_ => 1 } values %$wc;
        $_->close for grep { !$kept{$_} } @cs;
    }
    return $wc;
}

sub close_worker_clients {
    for my $wc (values %wcs) { $_->close for values %$wc }
    %wcs = ();
}

# Sends |n| requests for |host| through each worker; { slot => {backend =>
# count} }.
sub per_worker {
    my ($host, $n, $set) = @_;
    my $wc = worker_clients($set);
    my %by;
    for my $slot (sort keys %$wc) {
        for my $i (1 .. $n) {
            my $r = $wc->{$slot}->get("/w$slot/$i", host => $host);
            $by{$slot}{$r ? $r->{status} == 200
                ? $r->{headers}{'x-backend'} : "status $r->{status}"
                : 'error ' . $wc->{$slot}->error}++;
            last unless $r && $wc->{$slot}->is_open;
        }
    }
    return \%by;
}

# /clusters?format=json from every worker: { slot => decoded page }.
sub admin_pages {
    my ($path) = @_;
    my %by;
    my $want = 2;
    for my $burst (1 .. 12) {
        my @s = grep { $_ } map {
            http("GET $path HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
                port => port(8099), start => 1, quiet => 1) } 1 .. 6;
        for my $s (@s) {
            my $r = parse_response(http(undef, socket => $s, timeout => 5,
                quiet => 1));
            next unless ($r->{status} // 0) == 200;
            my $j = eval { decode_json($r->{body}) } or next;
            my $slot = ref $j->{worker} ? $j->{worker}{slot} : $j->{worker};
            $by{$slot // 'unknown'} //= $j;
        }
        last if keys %by >= $want;
    }
    return \%by;
}

sub admin_get {
    my ($path) = @_;
    my $r = parse_response(http_get($path, port => port(8099), timeout => 5,
        quiet => 1));
    return $r;
}

# The cluster |name| of a decoded /clusters?format=json page.
sub cluster_of {
    my ($page, $name) = @_;
    my ($c) = grep { ($_->{name} // '') eq $name } @{$page->{clusters} || []};
    return $c;
}

# The endpoint addresses of a cluster of /clusters (sorted).
sub ep_addrs {
    my ($c) = @_;
    return join ' ', sort map { $_->{address} } @{$c ? $c->{endpoints} : []};
}

# Finds, anywhere inside a decoded JSON value, the first scalar under a
# key matching |re|.
sub dig {
    my ($v, $re) = @_;
    if (ref $v eq 'HASH') {
        for my $k (sort keys %$v) {
            return $v->{$k} if $k =~ $re && defined $v->{$k} && !ref $v->{$k};
        }
        for my $k (sort keys %$v) {
            my $r = dig($v->{$k}, $re);
            return $r if defined $r;
        }
    } elsif (ref $v eq 'ARRAY') {
        for (@$v) {
            my $r = dig($_, $re);
            return $r if defined $r;
        }
    }
    return undef;
}

# The sum of the series of |name| matching the labels; undef when there
# is none.
sub metric {
    my ($name, %l) = @_;
    my $m = scrape(port(8099));
    return $m->series($name, %l) ? $m->sum($name, %l) : undef;
}

# 1 when the backends that answered (a spread() count) are exactly |want|.
sub only {
    my ($c, @want) = @_;
    return join(' ', sort keys %$c) eq join(' ', sort @want) ? 1 : 0;
}

###########################################################################
# Config errors from meshgate -t

my $listener = 'listeners = ( { name = "mesh"; listen = "127.0.0.1:'
    . port(8000) . '"; routes = "mesh"; } );';
my $routes = 'routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; '
    . 'cluster = "users"; } ); };';

# check_conf(NAME, TEXT, qr/.../ | undef): meshgate -t on TEXT (the
# routes and listeners added at the end); with a pattern, it must fail
# with an error line "FILE:LINE: ..." for the line holding "@@" (removed
# from the text) matching it; without, it must pass.
my $nconf = 0;
sub check_conf {
    my ($name, $text, $re) = @_;
    my @lines = split /\n/, $text;
    my ($line) = grep { $lines[$_ - 1] =~ /\@\@/ } 1 .. @lines;
    $text =~ s/\@\@//g;
    my $f = $t->write_file('check-' . ++$nconf . '.conf',
        "$text\n$listener\n$routes\n");
    my $r = $t->run_binary('-t', '-c', $f);
    if (!defined $re) {
        is($r->{status}, 0, "-t accepts: $name")
            or diag("$r->{stdout}$r->{stderr}");
        return;
    }
    is($r->{status}, 1, "-t refuses: $name") or diag($r->{stderr});
    like($r->{stderr}, qr/^\Q$f\E:$line: .*$re/m,
        "-t names $name as FILE:$line: reason") or diag($r->{stderr});
}

check_conf('an xds group and EDS clusters', <<'EOF', undef);
xds = { address = "127.0.0.1:18000"; node_id = "edge-1"; node_cluster = "gw";
        ads = true; api = "v2"; ready_wait = true; };
clusters = ( { name = "users"; discovery = "eds"; eds_name = "users-v1";
               max_endpoints = 1000; },
             { name = "static"; endpoints = ( { address = "127.0.0.1:1"; } ); } );
EOF
check_conf('discovery = "eds" without an xds group', <<'EOF', qr/xds/i);
clusters = ( { name = "users"; discovery = "eds"; } ); @@
EOF
check_conf('discovery = "eds" with an endpoints list', <<'EOF', qr/endpoints/);
xds = { address = "127.0.0.1:18000"; };
clusters = ( { name = "users"; discovery = "eds"; endpoints = ( { address = "127.0.0.1:1"; } ); } ); @@
EOF
check_conf('an unknown discovery', <<'EOF', qr/discovery|dns/);
xds = { address = "127.0.0.1:18000"; };
clusters = ( { name = "users"; discovery = "dns"; } ); @@
EOF
check_conf('an unknown api', <<'EOF', qr/api|v4/);
xds = { address = "127.0.0.1:18000"; api = "v4"; }; @@
clusters = ( { name = "users"; discovery = "eds"; } );
EOF
check_conf('an xds address without a port', <<'EOF', qr/address/);
xds = { address = "127.0.0.1"; }; @@
clusters = ( { name = "users"; discovery = "eds"; } );
EOF
check_conf('an xds address with port 0', <<'EOF', qr/address|port/);
xds = { address = "127.0.0.1:0"; }; @@
clusters = ( { name = "users"; discovery = "eds"; } );
EOF
check_conf('an unknown key in xds', <<'EOF', qr/unknown key "nodeid"/);
xds = { address = "127.0.0.1:18000"; nodeid = "x"; }; @@
clusters = ( { name = "users"; discovery = "eds"; } );
EOF
check_conf('max_endpoints = 0', <<'EOF', qr/max_endpoints/);
xds = { address = "127.0.0.1:18000"; };
clusters = ( { name = "users"; discovery = "eds"; max_endpoints = 0; } ); @@
EOF

###########################################################################
# Plain EDS v3: before and at the first answer

my $cp_pid = start_cp();

my $conf = <<'EOF';
gateway = { workers = 2; region = "r1"; zone = "z1"; drain_timeout = 1.0;
            log_level = "info"; };
admin = { listen = "127.0.0.1:%%PORT_8099%%"; };
xds = { address = "127.0.0.1:%%PORT_8090%%"; node_id = "edge-1";
        node_cluster = "edge"; };
regions = ( { name = "far"; front_proxy = "127.0.0.1:%%PORT_8086%%";
              protocol = "http/1.1"; } );
listeners = (
  { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh";
    access_log = "%%TESTDIR%%/access.log"; access_log_json = true; } );
routes = { mesh = (
  { domains = [ "users" ]; prefix = "/"; cluster = "users"; },
  { domains = [ "spill" ]; prefix = "/"; cluster = "spill"; },
  { domains = [ "nothing" ]; prefix = "/"; cluster = "nothing"; },
  { domains = [ "tight" ]; prefix = "/"; cluster = "tight"; },
  { domains = [ "probe" ]; prefix = "/"; direct_response = { status = 204; }; } ); };
clusters = (
  { name = "users"; discovery = "eds"; eds_name = "users-v1";
    lb = "weighted_round_robin"; },
  { name = "spill"; discovery = "eds"; out_of_zone = [ "far" ]; },
  { name = "nothing"; discovery = "eds"; },
  { name = "tight"; discovery = "eds"; max_endpoints = 1; } );
EOF
$t->write_conf($conf);
$t->run;

my $sub = wait_req('edge-1', kind => 'subscribe', timeout => 10);
ok($sub, 'meshgate opens a stream and subscribes')
    or diag(explain cp_state());
{
    my $s = cp_state();
    my ($st) = streams_of($s, 'edge-1');
    is($st && $st->{service}, $V3_EDS, 'on the v3 EDS service');
    my $n = $st ? $st->{node} : {};
    is($n->{cluster}, 'edge', 'Node.cluster is xds.node_cluster');
    is($n->{locality}{region}, 'r1', 'Node.locality.region is gateway.region');
    is($n->{locality}{zone}, 'z1', 'Node.locality.zone is gateway.zone');
    is($n->{user_agent_name}, 'meshgate', 'Node.user_agent_name is meshgate');
    my %names = map { $_ => 1 } map { @{$_->{resource_names}} }
        requests_of($s, 'edge-1');
    is(join(' ', sort keys %names), 'nothing spill tight users-v1',
        'the resource names are the eds_name (users-v1) or the cluster name')
        or diag(explain [ requests_of($s, 'edge-1') ]);
    my @types = map { $_->{type_url} } requests_of($s, 'edge-1');
    ok(@types && !(grep { $_ ne '' && $_ ne $V3_TYPE } @types),
        'type_url is the v3 ClusterLoadAssignment (or empty)')
        or diag("@types");
}

is(get('users')->[0], 503, 'before the first answer: no endpoints, 503');
is(get('spill')->[1], 'far',
    'before the first answer: the out_of_zone region serves');
is(admin_get('/ready')->{status}, 200,
    'without ready_wait, /ready is 200 before the first answer');
{
    my $page = decode_json(admin_get('/clusters?format=json')->{body} || '{}');
    my $c = cluster_of($page, 'users') // {};
    ok($c->{eds} && !$c->{eds}{received} && $c->{eds}{version} eq ''
        && !@{$c->{endpoints} || []},
        '/clusters: users has had no answer and has no endpoints')
        or diag(explain $c);
    is($c->{eds} && $c->{eds}{eds_name}, 'users-v1', '/clusters: its eds_name');
}

my $v = set('users-v1' => [ [ 'b1' ], [ 'b2', zone => 'z2' ] ]);
my $ack = wait_ack('edge-1', $v);
ok($ack, "the first answer ($v) is ACKed");
{
    my $s = cp_state();
    my ($resp) = grep { $_->{version_info} eq $v } @{$s->{responses}};
    is($ack && $ack->{response_nonce}, $resp && $resp->{nonce},
        'the ACK echoes the nonce');
    is($ack && $ack->{version_info}, $v, 'the ACK carries the version');
    ok(!$ack || !exists $ack->{error_detail}, 'the ACK has no error_detail');
}
ok(wait_backend('users', 'b2') && wait_backend('users', 'b1'),
    'requests reach both endpoints');
{
    my $by = per_worker('users', 6);
    is(scalar(keys %$by), 2, 'a client connection on each of the 2 workers');
    for my $slot (sort keys %$by) {
        is(show($by->{$slot}), 'b1=3 b2=3',
            "worker $slot balances over the first answer's endpoints");
    }
}
{
    my $pages = admin_pages('/clusters?format=json');
    is(scalar(keys %$pages), 2, '/clusters answered by both workers');
    my $want = join ' ', sort map { addr($_) } qw(b1 b2);
    for my $slot (sort keys %$pages) {
        my $c = cluster_of($pages->{$slot}, 'users');
        is(ep_addrs($c), $want, "/clusters of worker $slot lists the endpoints")
            or diag(explain $c);
        my $st = $c->{eds} // {};
        is($st->{version}, $v, "/clusters of worker $slot shows version $v")
            or diag(explain $c);
        ok($st->{received}, "/clusters of worker $slot: an answer arrived");
        cmp_ok(abs(($st->{last_update} // 0) - time), '<', 60,
            "/clusters of worker $slot shows the last update time");
        ok(exists $st->{nack} && !defined $st->{nack},
            "/clusters of worker $slot: no NACK yet");
        is($st->{endpoints}, 2, "/clusters of worker $slot: 2 endpoints");
        my ($e) = grep { $_->{address} eq addr('b2') } @{$c->{endpoints} || []};
        is($e && $e->{zone}, 'z2', "worker $slot: b2's locality zone is z2");
        is($e && $e->{weight}, 1, "worker $slot: b2's weight is 1");
        is($e && $e->{level}, 0, "worker $slot: b2's priority is 0");
    }
    my $dump = decode_json(admin_get('/config_dump')->{body} || '{}');
    my $x = $dump->{xds} // {};
    is(join(' ', map { $_ // 'null' } @$x{qw(address api node_id node_cluster)}),
        '127.0.0.1:' . port(8090) . ' v3 edge-1 edge',
        '/config_dump has the xds section');
    my ($dc) = grep { $_->{name} eq 'users' } @{$dump->{clusters} || []};
    is($dc && $dc->{eds} && $dc->{eds}{version}, $v,
        '/config_dump shows the cluster\'s discovery state');
}
is(metric('meshgate_xds_connected'), 1, 'meshgate_xds_connected is 1');
cmp_ok(metric('meshgate_xds_updates_total', cluster => 'users'), '>=', 1,
    'meshgate_xds_updates_total{cluster="users"} counts the update');
is(metric('meshgate_xds_endpoints', cluster => 'users'), 2,
    'meshgate_xds_endpoints{cluster="users"} is 2');

###########################################################################
# Add, remove, move, re-weight while 4 keep-alive clients send requests

my $stopfile = "$dir/load.stop";
my @load = map { spawn_load($_) } 1 .. 4;
sleep 0.5;

# Each phase: [ description, assignment, expected share { backend => w } ].
my @phases = (
    [ 'add b3', [ [ 'b1' ], [ 'b2' ], [ 'b3' ] ], { b1 => 1, b2 => 1, b3 => 1 } ],
    [ 'remove b1', [ [ 'b2' ], [ 'b3' ] ], { b2 => 1, b3 => 1 } ],
    [ 'move b2 to priority 1', [ [ 'b2', priority => 1 ], [ 'b3' ] ],
      { b3 => 1 } ],
    [ 'b2 back at priority 0, b3 weight 9',
      [ [ 'b2' ], [ 'b3', weight => 9 ] ], { b2 => 1, b3 => 9 } ],
    [ 'a reload (SIGHUP)', 'reload', { b2 => 1, b3 => 9 } ],
);
my @windows;    # [ from, to, phase ]
my $pv;
for my $p (@phases) {
    my ($what, $set, $share) = @$p;
    if (ref $set) {
        $pv = set('users-v1' => $set);
        my $a = wait_ack('edge-1', $pv);
        ok($a, "under load, $what: $pv is ACKed");
    } else {
        my $last = 0;
        $last < $_->{id} and $last = $_->{id} for @{cp_state()->{streams}};
        close_worker_clients();
        is($t->reload, 1, "under load, $what: a new generation starts");
        my $re = wait_req('edge-1', kind => 'subscribe',
            stream => sub { $_[0]{stream} > $last });
        is($re && $re->{version_info}, $pv, "under load, $what: the new "
            . 'control process subscribes with the last accepted version');
        my ($page) = values %{admin_pages('/clusters?format=json')};
        is($page->{generation}, 2, "under load, $what: /clusters of the new "
            . 'generation');
        is(cluster_of($page, 'users')->{eds}{version}, $pv,
            "under load, $what: it shows the endpoints of $pv");
    }
    sleep 0.3;
    my $from = time;
    my $by = per_worker('users', 8);
    for my $slot (sort keys %$by) {
        my @bad = grep { !$share->{$_} } keys %{$by->{$slot}};
        ok(!@bad, "under load, $what: worker $slot routes by the new set")
            or diag(show($by->{$slot}));
    }
    sleep 1.0;
    push @windows, [ $from, time, $p ];
}
my @reqs = stop_load(@load);
cmp_ok(scalar(@reqs), '>', 200, 'the load clients sent requests')
    or diag(scalar @reqs);
my @failed = grep { $_->{status} != 200 } @reqs;
is(scalar(@failed), 0, 'no request failed while the endpoints changed')
    or diag(join "\n", map { "$_->{start} $_->{status} $_->{error}" }
        @failed[0 .. ($#failed > 9 ? 9 : $#failed)]);
for my $w (@windows) {
    my ($from, $to, $p) = @$w;
    my ($what, undef, $share) = @$p;
    my %c;
    $c{$_->{backend}}++ for grep { $_->{start} >= $from && $_->{start} < $to
        && $_->{status} == 200 } @reqs;
    my @bad = grep { !$share->{$_} } keys %c;
    ok(!@bad, "after \"$what\": no request went outside the new set")
        or diag(show(\%c));
    my @missing = grep { !$c{$_} } keys %$share;
    ok(!@missing, "after \"$what\": every endpoint of it got requests")
        or diag(show(\%c));
    if ($share->{b3} && $share->{b3} == 9) {
        my $n = ($c{b2} // 0) + ($c{b3} // 0);
        cmp_ok($n ? $c{b3} / $n : 0, '>', 0.75,
            "after \"$what\": b3 takes about 9/10") or diag(show(\%c));
    }
}

###########################################################################
# A request in flight to an endpoint that is removed completes

{
    my $dv = set('users-v1' => [ [ 'b1' ] ]);
    ok(wait_ack('edge-1', $dv) && wait_backend('users', 'b1'),
        'drain: b1 alone serves');
    my $off = length $t->daemon_log($bpid{b1});
    my $s = http_get('/delay/1500', host => 'users', start => 1);
    ok(waitfor(sub { substr($t->daemon_log($bpid{b1}), $off)
        =~ m{GET /delay/1500} }, 3), 'drain: b1 has the slow request');
    my $rv = set('users-v1' => [ [ 'b2' ] ]);
    ok(wait_ack('edge-1', $rv), 'drain: b1 is removed (ACKed)');
    sleep 0.3;
    is(show(spread('users', 6)), 'b2=6', 'drain: new requests go to b2');
    my $r = parse_response(http(undef, socket => $s, timeout => 5));
    is($r->{status}, 200, 'drain: the request in flight to b1 completes');
    is($r->{headers}{'x-backend'}, 'b1', 'drain: answered by b1');
    is($r->{body}, "delayed 1500\n", 'drain: with its whole body');
}

###########################################################################
# max_endpoints = 1: its one slot is taken again by a new endpoint while
# requests are still in flight on the last one. They complete, and their
# upstream connections do not carry requests meant for the new endpoint.

{
    my $tv = set(tight => [ [ 'b1' ] ]);
    ok(wait_ack('edge-1', $tv) && wait_backend('tight', 'b1'),
        'slot taken again: b1 serves');
    my $wc = worker_clients('slow');
    my $off = length $t->daemon_log($bpid{b1});
    $_->send("GET /delay/1000 HTTP/1.1\r\nHost: tight\r\n\r\n")
        for values %$wc;
    ok(waitfor(sub { my @m = substr($t->daemon_log($bpid{b1}), $off)
        =~ m{GET /delay/1000}g; @m >= keys %$wc }, 3),
        'slot taken again: b1 has a slow request from each worker');
    $tv = set(tight => [ [ 'b2' ] ]);
    ok(wait_ack('edge-1', $tv), 'slot taken again: b2 replaces b1');
    # Each worker serves b2 while its request on b1 is still in flight.
    my $by = per_worker('tight', 2);
    for my $slot (sort keys %$by) {
        is(show($by->{$slot}), 'b2=2', "slot taken again: worker $slot "
            . 'sends to b2 while b1 still has a request of it');
    }
    for my $slot (sort keys %$wc) {
        my $r = $wc->{$slot}->read_response(timeout => 5);
        is($r && "$r->{status} $r->{headers}{'x-backend'}", '200 b1',
            "slot taken again: the request of worker $slot in flight on "
            . 'b1 completes');
    }
    $by = per_worker('tight', 4);
    for my $slot (sort keys %$by) {
        is(show($by->{$slot}), 'b2=4',
            "slot taken again: worker $slot then sends to b2 only");
    }
    my $c = spread('tight', 8);
    ok(only($c, 'b2'), 'slot taken again: so do new client connections')
        or diag(show($c));

    # More endpoints of this region than max_endpoints: refused.
    my $over = set(tight => [ [ 'b2' ], [ 'b3' ] ]);
    my $nack = wait_req('edge-1', kind => 'nack', nacked_version => $over);
    like($nack ? $nack->{error_detail}{message} // '' : '',
        qr/max_endpoints/, 'max_endpoints = 1: 2 endpoints are NACKed');
    # Those of other regions do not count.
    my $fits = set(tight => [ [ 'b2' ], [ 'b3', region => 'r2' ] ]);
    ok(wait_ack('edge-1', $fits),
        'max_endpoints = 1: an endpoint of another region does not count');
}

###########################################################################
# Invalid updates are NACKed; the last good endpoints keep serving

my $good = set('users-v1' => [ [ 'b2' ], [ 'b3' ] ]);
ok(wait_ack('edge-1', $good) && wait_backend('users', 'b3'),
    "NACK: $good (b2, b3) is ACKed first");
my $rej0 = metric('meshgate_xds_rejections_total', cluster => 'users') // 0;
my @kinds = qw(port0 bad-address no-address weight0 priority129 bad-health
    garbage wrong-type duplicate);
for my $kind (@kinds) {
    my $r = cp('POST', '/invalid', { cluster => 'users-v1', kind => $kind });
    my $bad = $r->{version};
    my $nack = wait_req('edge-1', kind => 'nack', nacked_version => $bad);
    ok($nack, "NACK: $kind ($bad) is NACKed");
    $nack //= {};
    is($nack->{version_info}, $good,
        "NACK: $kind: version_info is the last good version");
    is($nack->{response_nonce}, $r->{pushed}[0]{nonce},
        "NACK: $kind: the nonce of the rejected response");
    is($nack->{error_detail} && $nack->{error_detail}{code}, 3,
        "NACK: $kind: error_detail.code 3 (INVALID_ARGUMENT)");
    like($nack->{error_detail} && $nack->{error_detail}{message} // '',
        qr/\S/, "NACK: $kind: error_detail.message says why")
        or diag(explain $nack);
    note("NACK message for $kind: "
        . ($nack->{error_detail}{message} // '(none)'));
    ok(!wait_ack('edge-1', $bad, timeout => 0.2), "NACK: $kind is not ACKed");
    my $c = spread('users', 8);
    ok(only($c, qw(b2 b3)), "NACK: $kind: b2 and b3 keep serving")
        or diag(show($c));
}
{
    # Undecodable bytes and another type URL name no cluster for sure:
    # they may or may not count for users.
    my $d = (metric('meshgate_xds_rejections_total', cluster => 'users')
        // 0) - $rej0;
    ok($d >= @kinds - 2 && $d <= @kinds, 'meshgate_xds_rejections_total'
        . '{cluster="users"} counts the NACKs') or diag("grew by $d");
}
{
    my $pages = admin_pages('/clusters?format=json');
    my ($page) = values %$pages;
    my $c = cluster_of($page, 'users');
    like($c->{eds}{nack} // '', qr/more than one|duplicate|twice/i,
        '/clusters shows the last NACK error (that of "duplicate")')
        or diag(explain $c);
    is($c->{eds}{version}, $good,
        '/clusters still shows the last good version');
    is(ep_addrs($c), join(' ', sort map { addr($_) } qw(b2 b3)),
        '/clusters still lists the last good endpoints');
}

###########################################################################
# Other regions and unhealthy endpoints are not picked

$good = set('users-v1' => [ [ 'b1' ], [ 'b2', region => '', zone => '' ],
    [ 'b3', health => 'UNHEALTHY' ], [ 'b4', health => 'DRAINING' ],
    [ 'b6', health => 'TIMEOUT' ], [ 'b5', region => 'r2', zone => 'r2a' ] ]);
ok(wait_ack('edge-1', $good), "regions and health: $good is ACKed");
sleep 0.3;
{
    my $c = spread('users', 20);
    ok(only($c, qw(b1 b2)), 'only the healthy endpoints of region r1 '
        . '(or of no region) are picked') or diag(show($c));
    my ($page) = values %{admin_pages('/clusters?format=json')};
    my $cl = cluster_of($page, 'users');
    my %h = map { $_->{address} => $_->{health} } @{$cl->{endpoints} || []};
    ok(!exists $h{addr('b5')}, '/clusters leaves out the endpoint of '
        . 'region r2') or diag(explain $cl);
    like($h{addr('b3')} // '', qr/unhealthy/,
        '/clusters shows the UNHEALTHY endpoint as unhealthy')
        or diag(explain $cl);
    like($h{addr('b4')} // '', qr/draining|unhealthy/,
        '/clusters shows the DRAINING endpoint as draining')
        or diag(explain $cl);
    is($cl->{eds}{endpoints}, 5, 'the eds state counts the 5 endpoints of '
        . 'region r1 (or of none)');
}

# EDS localities come before the out_of_zone regions.
{
    my $sv = set(spill => [ [ 'b1' ] ]);
    ok(wait_ack('edge-1', $sv) && wait_backend('spill', 'b1'),
        'spill: its EDS endpoint serves before the out_of_zone region');
    my $c = spread('spill', 6);
    ok(only($c, 'b1'), 'spill: only it') or diag(show($c));
    $sv = set(spill => [ [ 'b1', health => 'UNHEALTHY' ] ]);
    ok(wait_ack('edge-1', $sv) && wait_backend('spill', 'far'),
        'spill: with it UNHEALTHY, the out_of_zone region serves');
    $c = spread('spill', 6);
    ok(only($c, 'far'), 'spill: only the region') or diag(show($c));
}

###########################################################################
# The control plane dies and comes back with another state

{
    my $s = cp_state();
    is(scalar(@{$s->{problems}}), 0,
        'the control plane saw no protocol violation so far')
        or diag(explain $s->{problems});
}
# The last version meshgate accepted (EDS has one version for all its
# resources on a stream): that of its last ACK.
my ($last_acked) = map { $_->{version_info} }
    reverse requests_of(cp_state(), 'edge-1', kind => 'ack');
kill 'KILL', $cp_pid;
waitpid($cp_pid, 0);
{
    my $c = spread('users', 10);
    ok(only($c, qw(b1 b2)),
        'control plane gone: the last endpoints keep serving')
        or diag(show($c));
}
ok(waitfor(sub { (metric('meshgate_xds_connected') // -1) == 0 }, 3),
    'meshgate_xds_connected drops to 0');

# For 3 s a listener that closes every connection at once stands in for
# the control plane: meshgate retries, with backoff, not in a loop.
my $sink = $t->run_daemon($^X, '-MIO::Socket::INET', '-MTime::HiRes=time',
    '-e', '$| = 1; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1",'
    . ' LocalPort => $ARGV[0], Listen => 64, ReuseAddr => 1) or die $!;'
    . ' print "listening\n"; while (my $c = $s->accept) {'
    . ' printf "conn %.3f\n", time; close $c }', port(8090));
waitfor(sub { $t->daemon_log($sink) =~ /^listening/m }, 5);
sleep 3;
$t->stop_daemons($sink);
my @tries = $t->daemon_log($sink) =~ /^conn /mg;
cmp_ok(scalar(@tries), '>=', 1, 'control plane down: meshgate tries again');
cmp_ok(scalar(@tries), '<=', 8,
    'control plane down: with backoff (at most 8 tries in 3 s)')
    or diag($t->daemon_log($sink));

my $t_restart = time;
$cp_pid = start_cp(prefix => 'r', state => { assignments => { 'users-v1' => [
    { address => '127.0.0.1', port => port($B{b4}), region => 'r1' } ] } });
my $resub = wait_req('edge-1', kind => 'subscribe', timeout => 20);
ok($resub, 'meshgate reconnects to the restarted control plane');
note(sprintf 'resubscribed %.2f s after the restart',
    ($resub ? $resub->{time} / 1000 : time) - $t_restart);
is($resub && $resub->{version_info}, $last_acked,
    "it resubscribes with the last accepted version ($last_acked)");
ok($resub && $resub->{node} && $resub->{node}{id} eq 'edge-1',
    'with its Node in the first request');
ok(wait_ack('edge-1', 'r1'), 'it ACKs the new state');
ok(wait_backend('users', 'b4'), 'the new state is applied');
is(show(spread('users', 10)), 'b4=10', 'only the new endpoint serves');
ok(waitfor(sub { (metric('meshgate_xds_connected') // -1) == 1 }, 3),
    'meshgate_xds_connected is 1 again');

# A dropped stream (UNAVAILABLE) is opened again; nothing changes.
{
    my $last = 0;
    $last < $_->{id} and $last = $_->{id} for @{cp_state()->{streams}};
    cp('POST', '/drop', {});
    ok(wait_req('edge-1', kind => 'subscribe',
        stream => sub { $_[0]{stream} > $last }, timeout => 10),
        'a dropped stream (UNAVAILABLE) is opened again');
}
is(show(spread('users', 4)), 'b4=4', 'the endpoints stay');
close_worker_clients();
is($t->stop, 0, 'meshgate stops');

###########################################################################
# ADS: two clusters on one stream, ready_wait, default node id and cluster,
# the address from MESHGATE_XDS_HOST / MESHGATE_XDS_PORT

port(8089);    # nothing listens there
$t->write_conf(<<'EOF');
gateway = { workers = 2; region = "r1"; zone = "z1"; drain_timeout = 1.0;
            log_level = "info"; };
admin = { listen = "127.0.0.1:%%PORT_8099%%"; };
xds = { address = "127.0.0.2:%%PORT_8089%%"; ads = true; ready_wait = true; };
listeners = (
  { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh"; } );
routes = { mesh = (
  { domains = [ "alpha" ]; prefix = "/"; cluster = "alpha"; },
  { domains = [ "beta" ]; prefix = "/"; cluster = "beta"; } ); };
clusters = (
  { name = "alpha"; discovery = "eds"; },
  { name = "beta"; discovery = "eds"; eds_name = "beta-x"; } );
EOF
{
    local $ENV{MESHGATE_XDS_HOST} = '127.0.0.1';
    local $ENV{MESHGATE_XDS_PORT} = port(8090);
    $t->run;
}
my $host = (POSIX::uname())[1];
my $adsub = wait_req($host, kind => 'subscribe', timeout => 10);
ok($adsub, 'ADS: meshgate reaches the control plane at MESHGATE_XDS_HOST:'
    . 'MESHGATE_XDS_PORT, not at the configured address');
{
    my $s = cp_state();
    my @st = streams_of($s, $host);
    is(join(' ', map { $_->{service} } @st), $V3_ADS,
        'ADS: one stream, on the v3 ADS service');
    is($st[0] && $st[0]{node}{cluster}, 'meshgate',
        'ADS: Node.cluster defaults to "meshgate"');
    my %names = map { $_ => 1 } map { @{$_->{resource_names}} }
        requests_of($s, $host);
    is(join(' ', sort keys %names), 'alpha beta-x',
        'ADS: both clusters are subscribed on it');
    my @types = map { $_->{type_url} } requests_of($s, $host);
    ok(@types && !(grep { $_ ne $V3_TYPE } @types),
        'ADS: every request carries the v3 type_url') or diag("@types");
}
is(admin_get('/ready')->{status}, 503, 'ready_wait: /ready is 503 before '
    . 'the first answer');
is(get('alpha')->[0], 503, 'ADS: no endpoints yet, 503');
my $va = set(alpha => [ [ 'b1' ] ]);
ok(wait_ack($host, $va), 'ADS: alpha is ACKed');
ok(wait_backend('alpha', 'b1'), 'ADS: alpha serves');
is(admin_get('/ready')->{status}, 503,
    'ready_wait: /ready stays 503 while beta had no answer');
my $vb = set('beta-x' => [ [ 'b2' ] ]);
ok(wait_ack($host, $vb), 'ADS: beta-x is ACKed');
ok(waitfor(sub { admin_get('/ready')->{status} == 200 }, 3),
    'ready_wait: /ready is 200 once every EDS cluster had an answer');
ok(wait_backend('beta', 'b2'), 'ADS: beta serves');
my $vab = set(alpha => [ [ 'b3' ] ], 'beta-x' => [ [ 'b4' ] ]);
{
    my $s = cp_state();
    my ($resp) = grep { $_->{version_info} eq $vab } @{$s->{responses}};
    is(join(' ', sort @{$resp ? $resp->{resources} : []}), 'alpha beta-x',
        'ADS: one response carries both clusters');
}
ok(wait_ack($host, $vab), 'ADS: it is ACKed');
ok(wait_backend('alpha', 'b3') && wait_backend('beta', 'b4'),
    'ADS: both clusters take their new endpoints');
is(scalar(streams_of(cp_state(), $host)), 1, 'ADS: still one stream');
is($t->stop, 0, 'meshgate stops');

###########################################################################
# API v2 (EDS and ADS) and EDS over TLS

$t->make_ca('ca');
$t->make_cert('xds', cn => 'xds.test', san => 'DNS:xds.test');
$t->make_cert('edge', cn => 'edge-tls');
# Mutual TLS: the control plane asks for a client certificate of the CA.
my $tls_cp = start_cp(grpc => 8092, control => 8093, prefix => 't',
    tls => [ 'xds.crt', 'xds.key', 'ca.crt' ]);

for my $case (
    [ 'v2 EDS', 'edge-v2', 'api = "v2";', $V2_EDS, $V2_TYPE, 8090, 8091 ],
    [ 'v2 ADS', 'edge-v2ads', 'api = "v2"; ads = true;', $V2_ADS, $V2_TYPE,
      8090, 8091 ],
    [ 'v3 EDS over mutual TLS', 'edge-tls',
      'tls = { ca = "ca.crt"; sni = "xds.test"; cert = "edge.crt"; '
      . 'key = "edge.key"; };', $V3_EDS, $V3_TYPE, 8092, 8093 ],
) {
    my ($what, $id, $extra, $svc, $type, $gp, $cpp) = @$case;
    $t->write_conf(<<"EOF");
gateway = { workers = 2; region = "r1"; drain_timeout = 1.0; log_level = "info"; };
xds = { address = "127.0.0.1:%%PORT_$gp%%"; node_id = "$id"; $extra };
listeners = (
  { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh"; } );
routes = { mesh = ( { domains = [ "legacy" ]; prefix = "/"; cluster = "legacy"; } ); };
clusters = ( { name = "legacy"; discovery = "eds"; eds_name = "legacy-$id"; } );
EOF
    $t->run;
    my $sub = wait_req($id, kind => 'subscribe', timeout => 10,
        control => $cpp);
    ok($sub, "$what: meshgate subscribes");
    my $s = cp_state(0, control => $cpp);
    is(join(' ', map { $_->{service} } streams_of($s, $id)), $svc,
        "$what: on $svc");
    my @types = map { $_->{type_url} } requests_of($s, $id);
    ok(@types && !(grep { $_ ne $type && !($_ eq '' && $svc =~ /Endpoint/) }
        @types), "$what: type_url $type") or diag("@types");
    my $lv = set("legacy-$id" => [ [ 'b5' ] ], -control => $cpp);
    ok(wait_ack($id, $lv, control => $cpp), "$what: the answer is ACKed");
    ok(wait_backend('legacy', 'b5'), "$what: its endpoint serves");
    is($t->stop, 0, "$what: meshgate stops");
}

# TLS that does not verify: no stream, no endpoints.
for my $case (
    [ 'a server name the certificate does not carry', 'edge-badsni',
      'tls = { ca = "ca.crt"; sni = "other.test"; cert = "edge.crt"; '
      . 'key = "edge.key"; };' ],
    [ 'no client certificate', 'edge-nocert',
      'tls = { ca = "ca.crt"; sni = "xds.test"; };' ],
) {
    my ($what, $id, $tls) = @$case;
    $t->write_conf(<<"EOF");
gateway = { workers = 2; region = "r1"; drain_timeout = 1.0; log_level = "info"; };
xds = { address = "127.0.0.1:%%PORT_8092%%"; node_id = "$id"; $tls };
listeners = (
  { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh"; } );
routes = { mesh = ( { domains = [ "legacy" ]; prefix = "/"; cluster = "legacy"; } ); };
clusters = ( { name = "legacy"; discovery = "eds"; eds_name = "legacy-$id"; } );
EOF
    set("legacy-$id" => [ [ 'b5' ] ], -control => 8093);
    $t->run;
    ok(!wait_req($id, kind => 'subscribe', timeout => 2, control => 8093),
        "TLS, $what: no stream reaches the control plane");
    is(get('legacy')->[0], 503, "TLS, $what: no endpoints (503)");
    is($t->stop, 0, "TLS, $what: meshgate stops");
}

{
    my @p = (@{cp_state()->{problems}},
        @{cp_state(0, control => 8093)->{problems}});
    is(scalar(@p), 0, 'the control planes saw no protocol violation')
        or diag(explain \@p);
}
cmp_ok(time - $T0, '<', 120, sprintf('the test took %.1f s', time - $T0));

$t->stop_and_check;
done_testing();

###########################################################################
# Load clients

# A load client: a keep-alive connection sending GET /load/K/N for host
# users back to back until the stop file appears (at most 40 s and 20000
# requests); one line per request "START END STATUS BACKEND ERROR" in
# load-K.
sub spawn_load {
    my ($k) = @_;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    return $pid if $pid;
    my @lines;
    my $deadline = time + 40;
    my $c;
    my $n = 0;
    while (!-e $stopfile && time < $deadline && $n < 20000) {
        $n++;
        $c //= Test::Meshgate::Client->new(port => port(8000));
        my $t0 = time;
        my $r = $c ? $c->get("/load/$k/$n", host => 'users') : undef;
        my $err = $c ? $c->error : $Test::Meshgate::ERROR;
        push @lines, sprintf("%.4f %.4f %d %s %s\n", $t0, time,
            $r ? $r->{status} : 0,
            ($r && $r->{headers}{'x-backend'}) || '-',
            $r ? '-' : ($err || 'error') =~ s/\s+/_/gr);
        if (!$r || ($r->{headers}{connection} // '') =~ /close/i) {
            $c->close if $c;
            undef $c;
        }
    }
    open my $out, '>', "$dir/load-$k.tmp" or POSIX::_exit(1);
    print $out @lines;
    close $out;
    rename "$dir/load-$k.tmp", "$dir/load-$k";
    POSIX::_exit(0);
}

# Stops the load clients; every request as { start, end, status,
# backend, error }.
sub stop_load {
    my (@pids) = @_;
    open my $fh, '>', $stopfile or die "$stopfile: $!";
    close $fh;
    my %live = map { $_ => 1 } @pids;
    waitfor(sub {
        delete $live{$_} for grep { waitpid($_, WNOHANG) != 0 } keys %live;
        return !%live;
    }, 15);
    for (keys %live) { kill 'KILL', $_; waitpid($_, 0) }
    my @r;
    for my $f (glob "$dir/load-*") {
        next if $f =~ /\.tmp$/;
        for (split /\n/, read_file($f)) {
            my ($s, $e, $st, $b, $err) = split / /;
            push @r, { start => $s, end => $e, status => $st, backend => $b,
                error => $err };
        }
    }
    return @r;
}
