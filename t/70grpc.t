#!/usr/bin/perl

# gRPC through meshgate to an HTTP/2 cleartext upstream (cluster protocol
# "h2c"), with grpc-js peers (t/grpc): unary calls with initial metadata
# and trailers, a trailers-only failure, a 3 MB message, server, client
# and bidirectional streaming, parallel calls on one connection, the
# upstream timeout turned into DEADLINE_EXCEEDED and an unreachable
# cluster into UNAVAILABLE; and what the upstream sees of the request.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP qw(decode_json);
use POSIX ();
use Test::More;
use Test::Meshgate;

my $grpc_dir = "$FindBin::Bin/grpc";
my ($node) = grep { -x $_ } map { ("$_/node", "$_/nodejs") }
    split /:/, $ENV{PATH} // '';
plan(skip_all => 'node is not installed') unless $node;
plan(skip_all => "no $grpc_dir/node_modules: run tools/install-deps --test")
    unless -d "$grpc_dir/node_modules/\@grpc/grpc-js"
        && -d "$grpc_dir/node_modules/\@grpc/proto-loader";

my $t = Test::Meshgate->new;

my $server = $t->run_daemon($node, "$grpc_dir/server.js",
    '--port', port(8081), '--watch-parent');
waitfor(sub { $t->daemon_log($server) =~ /^listening \d+$/m }, 20)
    or die "server.js did not start:\n" . $t->daemon_log($server);

# Nothing listens on port(8089): the "dead" cluster.
port(8089);
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "grpc"; listen = "127.0.0.1:%%PORT_8000%%"; h2c = true;
      routes = "mesh"; access_log = "%%TESTDIR%%/access.log"; } );
routes = { mesh = (
    { domains = [ "grpc.test" ]; prefix = "/"; cluster = "grpc"; },
    { domains = [ "dead.test" ]; prefix = "/"; cluster = "dead"; } ); };
clusters = (
    { name = "grpc"; protocol = "h2c"; response_timeout = 2.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "dead"; protocol = "h2c"; connect_timeout = 1.0;
      endpoints = ( { address = "127.0.0.1:%%PORT_8089%%"; } ); } );
EOF
$t->run;

my $dir = $t->testdir;
my $ncall = 0;

# grpc(SCENARIO, authority => HOST, args => [...]): runs client.js through
# meshgate and returns its JSON outcome as a hash; {code => 'NO JSON'} when
# it printed none. raw and stderr keep what it printed, for diag. The
# client bounds itself at 60 s; timeout(1) is the backstop.
sub grpc {
    my ($scenario, %o) = @_;
    my @argv = ($node, "$grpc_dir/client.js",
        '--target', '127.0.0.1:' . port(8000),
        '--authority', $o{authority} // 'grpc.test',
        '--scenario', $scenario, @{$o{args} || []});
    my $err = "$dir/client-" . ++$ncall . '.err';
    my $pid = open(my $fh, '-|') // die "fork: $!\n";
    if ($pid == 0) {
        open STDERR, '>', $err or POSIX::_exit(127);
        { no warnings 'exec'; exec 'timeout', '90', @argv; }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my $status = $?;
    my ($line) = grep { /^\{/ } reverse split /\n/, $out;
    my $r = eval { decode_json($line // '') };
    $r = { code => 'NO JSON' } unless ref $r eq 'HASH';
    $r->{raw} = $out;
    $r->{stderr} = read_file($err);
    $r->{exit} = $status >> 8;
    $r->{argv} = join ' ', @argv[1 .. $#argv];
    return $r;
}

# What to print when a check on |r| fails.
sub show {
    my ($r) = @_;
    my $s = "client.js $r->{argv}\nexit $r->{exit}, printed: $r->{raw}";
    $s .= "stderr: $r->{stderr}" if $r->{stderr} ne '';
    return $s;
}

sub seen { $_[0]->{seen_headers}{$_[1]} }

# One unary call: the reply, initial metadata, trailers, and the request
# as the server saw it.
{
    my $r = grpc('unary', args => [ '--message', 'hello through meshgate',
        '--deadline-ms', '30000' ]);
    is($r->{code}, 0, 'unary: status OK') or diag(show($r));
    is($r->{message}, 'hello through meshgate', 'unary: the reply arrives')
        or diag(show($r));
    is($r->{initial}{'x-initial'}, 'yes',
        'unary: initial metadata (x-initial) arrives') or diag(show($r));
    is($r->{trailers}{'x-trailer'}, 'kept',
        'unary: trailing metadata (x-trailer) arrives') or diag(show($r));
    is(seen($r, 'x-user'), '42', 'unary: the server sees x-user metadata')
        or diag(show($r));
    is(seen($r, ':authority'), 'grpc.test',
        'unary: the server sees :authority grpc.test') or diag(show($r));
    is(seen($r, 'x-forwarded-for'), '127.0.0.1',
        'unary: the server sees x-forwarded-for naming the client')
        or diag(show($r));
    is(seen($r, 'x-forwarded-proto'), 'http',
        'unary: the server sees x-forwarded-proto: http') or diag(show($r));
    like(seen($r, 'via') // '', qr{^(?:HTTP/)?2(?:\.0)? meshgate$},
        'unary: the server sees one via naming HTTP/2 and meshgate')
        or diag(show($r));
    like(seen($r, 'x-request-id') // '', qr/^[0-9A-Za-z-]{8,}$/,
        'unary: the server sees a generated x-request-id') or diag(show($r));
    is(seen($r, 'te'), 'trailers',
        'unary: te: trailers reaches the server (gRPC servers require it)')
        or diag(show($r));
    like(seen($r, 'content-type') // '', qr{^application/grpc(?:\+proto)?$},
        'unary: content-type application/grpc reaches the server')
        or diag(show($r));
    like(seen($r, 'grpc-timeout') // '', qr/^\d{1,8}[HMSmun]$/,
        'unary: grpc-timeout reaches the server (deadline propagation)')
        or diag(show($r));

    $r = grpc('unary', args => [ '--metadata', 'x-request-id=grpc-id-42' ]);
    is(seen($r, 'x-request-id'), 'grpc-id-42',
        'unary: a given x-request-id reaches the server unchanged')
        or diag(show($r));
}

# A failure: the server answers trailers-only (grpc-status in the HEADERS
# frame that ends the stream).
{
    my $r = grpc('unary_fail', args => [ '--code', '5' ]);
    is($r->{code}, 5, 'unary_fail: status NOT_FOUND (5) arrives')
        or diag(show($r));
    is($r->{details}, 'failed on purpose',
        'unary_fail: with its details (grpc-message)') or diag(show($r));
    is($r->{trailers}{'x-trailer'}, 'kept',
        'unary_fail: and its trailing metadata') or diag(show($r));
}

# A 3 MB message each way: many DATA frames and window updates.
{
    my $r = grpc('unary', args => [ '--payload-bytes', 3_000_000 ]);
    is($r->{code}, 0, 'a 3 MB unary call: status OK') or diag(show($r));
    ok($r->{payload_ok} && $r->{payload_bytes} == 3_000_000,
        'a 3 MB unary call: the payload comes back intact') or diag(show($r));
}

{
    my $r = grpc('server_stream', args => [ '--count', 1000 ]);
    is($r->{code}, 0, 'server_stream: status OK') or diag(show($r));
    is($r->{replies}, 1000, 'server_stream: 1000 replies arrive')
        or diag(show($r));
    ok($r->{in_order} && $r->{replies}, 'server_stream: in order')
        or diag(show($r));
    is($r->{trailers}{'x-trailer'}, 'kept',
        'server_stream: the trailers follow the data') or diag(show($r));
}

{
    my $r = grpc('client_stream', args => [ '--count', 1000 ]);
    is($r->{code}, 0, 'client_stream: status OK') or diag(show($r));
    is($r->{count}, 1000, 'client_stream: the server got 1000 messages')
        or diag(show($r));
    is($r->{total_bytes}, $r->{expected_bytes},
        'client_stream: and every payload byte') or diag(show($r));
}

{
    my $r = grpc('bidi', args => [ '--count', 10000 ]);
    is($r->{code}, 0, 'bidi: status OK') or diag(show($r));
    is($r->{received}, 10000, 'bidi: 10000 echoes received')
        or diag(show($r));
    ok($r->{in_order} && $r->{received}, 'bidi: every echo in order')
        or diag(show($r));
    is($r->{trailers}{'x-trailer'}, 'kept', 'bidi: then the trailers')
        or diag(show($r));
}

# The upstream answers after 4 s, the cluster's response_timeout is 2 s and
# the client's deadline 10 s: DEADLINE_EXCEEDED must come from meshgate.
{
    my $log = $t->daemon_log($server);
    my $r = grpc('slow', args => [ '--delay', 4000,
        '--deadline-ms', 10000 ]);
    is($r->{code}, 4, 'slow upstream: DEADLINE_EXCEEDED (4) from meshgate')
        or diag(show($r));
    ok(defined $r->{elapsed_ms} && $r->{elapsed_ms} >= 1500
        && $r->{elapsed_ms} < 3500,
        'slow upstream: after the 2 s response_timeout, well before 4 s')
        or diag(show($r));
    ok(waitfor(sub {
        substr($t->daemon_log($server), length $log) =~ /^cancelled Unary$/m
    }, 5), 'slow upstream: meshgate cancels the upstream call')
        or diag($t->daemon_log($server));
}

# Many streams on one client connection, side by side; also after the
# reset above, the upstream connection still serves.
{
    my $r = grpc('parallel', args => [ '--count', 20, '--delay', 500 ]);
    is($r->{code}, 0, '20 parallel unary calls: status OK')
        or diag(show($r));
    is($r->{ok_calls}, 20, '20 parallel unary calls: all 20 OK')
        or diag(show($r));
    ok($r->{ok_calls} && !$r->{mismatched},
        '20 parallel unary calls: each gets its own reply') or diag(show($r));
    ok($r->{code} eq '0' && ($r->{elapsed_ms} // 1e9) < 5000,
        '20 parallel unary calls: run side by side (not 20 x 0.5 s)')
        or diag(show($r));
}

{
    my $r = grpc('unary', authority => 'dead.test');
    is($r->{code}, 14, 'dead cluster: UNAVAILABLE (14)') or diag(show($r));
    my $addr = '127.0.0.1:' . port(8089);
    like($r->{details} // '', qr/\bdead\b|upstream|\Q$addr\E/i,
        'dead cluster: the details name the upstream') or diag(show($r));
    # grpc-js makes up UNAVAILABLE itself when it cannot reach meshgate, or
    # from an HTTP error status without grpc-status.
    unlike($r->{details} // '',
        qr/No connection established|Received HTTP status code/,
        'dead cluster: the status is meshgate\'s grpc-status')
        or diag(show($r));
}

{
    my $r = grpc('unary');
    is($r->{code}, 0, 'a unary call after all this is still served')
        or diag(show($r));
}

$t->stop_and_check;
done_testing();
