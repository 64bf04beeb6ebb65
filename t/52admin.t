#!/usr/bin/perl

# The admin listener's pages: /server_info, /clusters (text and JSON:
# every endpoint of every level, with its region, health from the shared
# table and this worker's outlier ejections), /config_dump (valid JSON,
# the whole configuration, never a private key nor its path) and a 404
# that lists the pages. A non-loopback admin address without allow_remote
# is refused in t/10config-errors.t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;
$t->plan(45);

# A TLS listener whose key file carries a marker line before the PEM
# block (OpenSSL skips it): the dump must never show the file's text.
my $MARKER = 'MARKER-admin-dump-secret-7f3a';
$t->make_ca('ca');
$t->make_cert('srv', cn => 'admin.test', san => 'DNS:admin.test');
my $key = Test::Meshgate::read_file("$dir/srv.key");
$t->write_file('srv.key', "$MARKER\n$key");
like(Test::Meshgate::read_file("$dir/srv.key"), qr/^\Q$MARKER\E$/m,
    'the key file holds the marker line');

my $HC = 'interval = 0.3; timeout = 0.25; healthy_threshold = 1; '
    . 'unhealthy_threshold = 2;';

$t->write_conf(<<"EOF");
gateway = { workers = 1; region = "home"; zone = "z1"; drain_timeout = 1.0;
            log_level = "info"; };
admin = { listen = "127.0.0.1:%%PORT_8099%%"; };
regions = ( { name = "far"; front_proxy = "127.0.0.1:%%PORT_8086%%";
              protocol = "http/1.1"; } );
listeners = (
    { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh"; },
    { name = "secure"; listen = "127.0.0.1:%%PORT_8443%%"; routes = "mesh";
      tls = { certificates = ( { cert = "srv.crt"; key = "srv.key"; } ); }; } );
routes = { mesh = (
    { domains = [ "web" ]; prefix = "/"; cluster = "web"; },
    { domains = [ "solo", "*.solo.test" ]; prefix = "/"; cluster = "solo"; },
    { domains = [ "*" ]; path = "/quote";
      direct_response = { status = 200; body = "say \\"hi\\"\\n"; }; } ); };
clusters = (
    { name = "web"; health_check = { path = "/status/200"; $HC };
      out_of_zone = [ "far" ];
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; zone = "z1"; },
                    { address = "127.0.0.1:%%PORT_8082%%"; weight = 3; } ); },
    { name = "solo"; outlier = { consecutive_5xx = 2; };
      retry = { attempts = 1; };
      endpoints = ( { address = "127.0.0.1:%%PORT_8083%%"; } ); },
    { name = "named";
      endpoints = ( { address = "localhost:%%PORT_8084%%"; } ); } );
EOF

$t->run_backend(port => 8081, name => 'a');
my $b_pid = $t->run_backend(port => 8082, name => 'b');
$t->run_backend(port => 8083, name => 'solo');
$t->run_backend(port => 8086, name => 'far');
$t->run;

my $ADMIN = '127.0.0.1:' . port(8099);
my ($pa, $pb, $pc, $pf) = map { '127.0.0.1:' . port($_) }
    8081, 8082, 8083, 8086;
my $pn = port(8084);

sub admin_get {
    my ($path) = @_;
    return parse_response(http_get($path, port => port(8099)), eof => 1);
}

sub admin_json {
    my ($path) = @_;
    my $r = admin_get($path);
    return (undef, $r) unless $r->{status} && $r->{status} == 200;
    my $j = eval { JSON::PP::decode_json($r->{body}) };
    return ($j, $r);
}

# The JSON entry of |addr| in cluster |cl| of a /clusters?format=json page.
sub endpoint_of {
    my ($j, $cl, $addr) = @_;
    for my $c (@{$j->{clusters} || []}) {
        next unless $c->{name} eq $cl;
        for my $e (@{$c->{endpoints}}) {
            return $e if $e->{address} eq $addr;
        }
    }
    return undef;
}

###########################################################################
# /server_info

my ($si, $r) = admin_json('/server_info');
ok($si, '/server_info is JSON') or diag($r->{body} // 'no response');
is($si->{generation}, 1, '/server_info: the generation');
is($si->{workers}, 1, '/server_info: the number of workers');
is($si->{region}, 'home', '/server_info: the region');
is($si->{zone}, 'z1', '/server_info: the zone');
ok(defined $si->{version} && length $si->{version}, '/server_info: the version');
like($si->{uptime_seconds} // '', qr/^\d+$/, '/server_info: the uptime');
my @workers = grep { Test::Meshgate::proc_title($_) =~ /^meshgate: worker /
} $t->worker_pids;
is_deeply([ $si->{worker_pid} ], \@workers,
    '/server_info: the pid of the worker that answered');

###########################################################################
# /clusters: every endpoint, text and JSON.

my $j;
ok(waitfor(sub {
    ($j) = admin_json('/clusters?format=json');
    my ($a, $b) = map { endpoint_of($j, 'web', $_) } $pa, $pb;
    return $a && $b && $a->{health} eq 'healthy' && $b->{health} eq 'healthy';
}, 10), '/clusters: both checked endpoints become healthy');
is($j->{worker}{pid}, $si->{worker_pid}, '/clusters: names the worker');

my %seen;
for my $c (@{$j->{clusters}}) {
    for my $e (@{$c->{endpoints}}) {
        $seen{"$c->{name} $e->{address}"} = "$e->{level} $e->{region}";
    }
}
is_deeply(\%seen, {
    "web $pa" => '0 local', "web $pb" => '0 local', "web $pf" => '1 far',
    "solo $pc" => '0 local', "named localhost:$pn" => '0 local',
}, '/clusters?format=json: every endpoint of every level, with its region');
my $eb = endpoint_of($j, 'web', $pb);
is($eb->{weight}, 3, '/clusters: the weight');
is(endpoint_of($j, 'web', $pa)->{zone}, 'z1', '/clusters: the zone');
is(endpoint_of($j, 'solo', $pc)->{health}, 'unchecked',
    '/clusters: an endpoint without health check is unchecked');
ok(!endpoint_of($j, 'solo', $pc)->{ejected}, '/clusters: not ejected yet');

$r = admin_get('/clusters');
is($r->{headers}{'content-type'}, 'text/plain', '/clusters is text by default');
my @lines = grep { !/^#/ } split /\n/, $r->{body};
is(scalar @lines, 5, '/clusters: one line per endpoint');
like($r->{body}, qr/^web::\Q$pf\E::level=1 region=far .*health=unchecked/m,
    '/clusters text: the front proxy on level 1');
like($r->{body},
    qr/^web::\Q$pb\E::level=0 region=local zone=- weight=3 health=healthy ejected=no ejections=0 active=0 connections=\d+ pending=0$/m,
    '/clusters text: all the fields of an endpoint');

###########################################################################
# Health: a killed checked backend becomes unhealthy.

$t->stop_daemons($b_pid);
ok(waitfor(sub {
    ($j) = admin_json('/clusters?format=json');
    my $e = endpoint_of($j, 'web', $pb);
    return $e && $e->{health} eq 'unhealthy';
}, 10), '/clusters: a killed backend shows as unhealthy');
is(endpoint_of($j, 'web', $pa)->{health}, 'healthy',
    '/clusters: its neighbour stays healthy');

###########################################################################
# Outlier ejection after 2 consecutive 5xx (one worker sees them all).

for (1 .. 2) {
    my $x = parse_response(http_get('/status/500', host => 'solo'), eof => 1);
    is($x->{status}, 500, "solo answers 500 ($_)");
}
($j) = admin_json('/clusters?format=json');
my $ec = endpoint_of($j, 'solo', $pc);
ok($ec && $ec->{ejected}, '/clusters: the endpoint is ejected after 2 5xx');
cmp_ok($ec->{ejected_for} // 0, '>', 0, '/clusters: for some seconds more');
is($ec->{ejections}, 1, '/clusters: its ejection is counted');
like(admin_get('/clusters')->{body},
    qr/^solo::\Q$pc\E::.* ejected=yes ejected_for=[\d.]+ ejections=1 /m,
    '/clusters text: shows the ejection');

###########################################################################
# /config_dump

my $dump;
($dump, $r) = admin_json('/config_dump');
ok($dump, '/config_dump is valid JSON') or diag($r->{body});
is_deeply([ map { $_->{name} } @{$dump->{clusters}} ],
    [ 'web', 'solo', 'named' ],
    '/config_dump: the clusters');
is_deeply([ map { $_->{name} } @{$dump->{listeners}} ], [ 'mesh', 'secure' ],
    '/config_dump: the listeners, admin apart');
is($dump->{admin}{listen}, $ADMIN, '/config_dump: the admin listener');
is($dump->{regions}[0]{front_proxy}, $pf, '/config_dump: the regions');
is($dump->{gateway}{region}, 'home', '/config_dump: the gateway settings');
my ($web) = @{$dump->{clusters}};
is_deeply([ map { "$_->{level} $_->{region} " . scalar @{$_->{endpoints}} }
    @{$web->{priorities}} ], [ '0 local 2', '1 far 1' ],
    '/config_dump: the priority levels and their endpoints');
is($web->{health_check}{path}, '/status/200', '/config_dump: health_check');
is($dump->{clusters}[1]{outlier}{consecutive_5xx}, 2, '/config_dump: outlier');
ok(exists $web->{retry}{attempts} && exists $web->{circuit_breakers}
    {max_requests}, '/config_dump: retry and circuit breakers');
my %domains = map { $_->{domain} => $_ } @{$dump->{routes}[0]{virtual_hosts}};
is_deeply([ sort keys %domains ], [ '*', '*.solo.test', 'solo', 'web' ],
    '/config_dump: the route table by domain');
is($domains{'*'}{routes}[0]{path}, '/quote', '/config_dump: a route');
is($dump->{listeners}[1]{tls}{certificate}{key}, '[redacted]',
    '/config_dump: the key is redacted');
like($dump->{listeners}[1]{tls}{certificate}{subject}, qr/admin\.test/,
    '/config_dump: the certificate subject');
unlike($r->{body}, qr/\Q$MARKER\E|PRIVATE KEY|srv\.key/,
    '/config_dump: neither the key file text nor its path');

###########################################################################
# Unknown paths

$r = admin_get('/nope');
is($r->{status}, 404, 'an unknown admin path is 404');
like($r->{body}, qr{/clusters.*/config_dump}s, 'the 404 lists the pages');
