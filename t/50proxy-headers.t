#!/usr/bin/perl

# What the upstream receives: hop-by-hop headers removed, X-Forwarded-For,
# X-Forwarded-Proto, Via and X-Request-Id added, Host and end-to-end
# headers kept as sent.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; access_log = "%%TESTDIR%%/access.log"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend";
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$t->run;

# upstream_head($raw): sends a request for /echo... and returns
# { line => request line, h => { lc name => [values] }, names => [names in
# order], status => client status }.
sub upstream_head {
    my ($raw) = @_;
    my $r = parse_response(http($raw));
    my %u = (status => $r->{status}, h => {}, names => []);
    return \%u unless ($r->{status} // 0) == 200;
    my ($head) = split /\r\n\r\n/, $r->{body}, 2;
    my @lines = split /\r\n/, $head;
    $u{line} = shift @lines;
    for my $l (@lines) {
        my ($n, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        push @{$u{names}}, $n;
        push @{$u{h}{lc $n}}, $v;
    }
    return \%u;
}

sub hv {
    my ($u, $name) = @_;
    my $v = $u->{h}{lc $name};
    return $v ? join(', ', @$v) : undef;
}

# A plain request: what gets added.
my $u = upstream_head("GET /echo?a=1&b=%2F HTTP/1.1\r\nHost: Svc.Test:8000\r\n"
    . "User-Agent: t/1\r\nAccept: */*\r\nX-Custom: a  b\r\n"
    . "Cookie: k=v; k2=v2\r\nConnection: close\r\n\r\n");
is($u->{status}, 200, 'a request through the proxy');
is($u->{line}, 'GET /echo?a=1&b=%2F HTTP/1.1',
    'the request line is kept, query included');
is(hv($u, 'Host'), 'Svc.Test:8000', 'Host is kept as sent');
is(scalar @{$u->{h}{host} || []}, 1, 'once');
is(hv($u, 'X-Forwarded-For'), '127.0.0.1', 'X-Forwarded-For is the client IP');
is(hv($u, 'X-Forwarded-Proto'), 'http', 'X-Forwarded-Proto: http');
is(hv($u, 'Via'), '1.1 meshgate', 'Via: 1.1 meshgate');
like(hv($u, 'X-Request-Id') // '', qr/^[0-9A-Za-z-]{8,}$/,
    'an X-Request-Id is generated');
is(scalar @{$u->{h}{'x-request-id'} || []}, 1, 'one X-Request-Id');
is(hv($u, 'User-Agent'), 't/1', 'User-Agent is kept');
is(hv($u, 'Accept'), '*/*', 'Accept is kept');
is(hv($u, 'X-Custom'), 'a  b', 'a custom header keeps its inner spaces');
is(hv($u, 'Cookie'), 'k=v; k2=v2', 'Cookie is kept');
is(hv($u, 'Connection'), undef, 'Connection is removed');
my @order = grep { /^(?:User-Agent|Accept|X-Custom|Cookie)$/ } @{$u->{names}};
is("@order", 'User-Agent Accept X-Custom Cookie',
    'end-to-end headers keep their order');

my $u2 = upstream_head("GET /echo HTTP/1.1\r\nHost: svc.test\r\n"
    . "Connection: close\r\n\r\n");
isnt(hv($u2, 'X-Request-Id'), hv($u, 'X-Request-Id'),
    'each request gets its own X-Request-Id');

# Hop-by-hop headers.
$u = upstream_head("GET /echo HTTP/1.1\r\nHost: svc.test\r\n"
    . "Connection: close, X-Secret, x-other\r\nKeep-Alive: timeout=5\r\n"
    . "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n"
    . "Upgrade: websocket\r\nX-Secret: s3cret\r\nX-Other: o\r\n"
    . "Proxy-Authorization: Basic eDp5\r\nX-Kept: yes\r\n\r\n");
is($u->{status}, 200, 'a request full of hop-by-hop headers is proxied');
for my $h (qw(Connection Keep-Alive Proxy-Connection TE Trailer Upgrade)) {
    is(hv($u, $h), undef, "$h is not forwarded");
}
is(hv($u, 'X-Secret'), undef, 'a header named in Connection is not forwarded');
is(hv($u, 'X-Other'), undef,
    'nor one named in Connection in another case');
is(hv($u, 'X-Kept'), 'yes', 'other headers are forwarded');

$u = upstream_head("GET /echo HTTP/1.1\r\nHost: svc.test\r\n"
    . "Connection: X-A\r\nConnection: X-B, close\r\nX-A: 1\r\nX-B: 2\r\n"
    . "X-C: 3\r\n\r\n");
ok(!defined hv($u, 'X-A') && !defined hv($u, 'X-B'),
    'headers named in several Connection fields are all removed');
is(hv($u, 'X-C'), '3', 'others stay');

# Appending to what the client sent.
$u = upstream_head("GET /echo HTTP/1.1\r\nHost: svc.test\r\n"
    . "X-Forwarded-For: 10.1.2.3\r\nVia: 1.0 edge\r\n"
    . "X-Request-Id: my-id-42\r\nConnection: close\r\n\r\n");
is(hv($u, 'X-Forwarded-For'), '10.1.2.3, 127.0.0.1',
    'the client IP is appended to X-Forwarded-For');
like(hv($u, 'Via') // '', qr/^1\.0 edge, 1\.1 meshgate$/,
    'Via is appended to');
is(hv($u, 'X-Request-Id'), 'my-id-42', 'a given X-Request-Id is kept');
is(scalar @{$u->{h}{'x-request-id'} || []}, 1, 'and not doubled');

$u = upstream_head("GET /echo HTTP/1.1\r\nHost: svc.test\r\n"
    . "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n"
    . "Connection: close\r\n\r\n");
is(hv($u, 'X-Forwarded-For'), '10.0.0.1, 10.0.0.2, 127.0.0.1',
    'several X-Forwarded-For fields keep their order, the client IP last');

$u = upstream_head("GET /echo HTTP/1.1\r\nHost: svc.test\r\n"
    . "X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n");
is(hv($u, 'X-Forwarded-Proto'), 'http',
    'a client cannot claim X-Forwarded-Proto: https');

# An absolute-form target: origin-form upstream, and the Host is the
# target's authority (RFC 9112 3.2.2), the one the request was routed by.
$u = upstream_head("GET http://Abs.Test:81/echo?x=1 HTTP/1.1\r\n"
    . "Host: other.test\r\nConnection: close\r\n\r\n");
is($u->{line}, 'GET /echo?x=1 HTTP/1.1',
    'an absolute-form target goes upstream in origin form');
is(hv($u, 'Host'), 'Abs.Test:81',
    'with the target\'s authority as Host, not the Host header');

# HTTP/1.0 client, methods, bodies.
$u = upstream_head("GET /echo HTTP/1.0\r\nHost: svc.test\r\n\r\n");
is($u->{status}, 200, 'an HTTP/1.0 request is proxied');
like($u->{line} // '', qr{^GET /echo HTTP/1\.[01]$},
    'with an HTTP/1.x request line');
is(hv($u, 'Host'), 'svc.test', 'and its Host');

$u = upstream_head("GET /echo HTTP/1.0\r\n\r\n");
is($u->{status}, 200, 'an HTTP/1.0 request without Host is proxied');

for my $m (qw(PUT DELETE OPTIONS PATCH PURGE)) {
    $u = upstream_head("$m /echo HTTP/1.1\r\nHost: svc.test\r\n"
        . "Content-Length: 2\r\nConnection: close\r\n\r\nhi");
    is($u->{line}, "$m /echo HTTP/1.1", "$m is forwarded as is");
}

$u = upstream_head("POST /echo HTTP/1.1\r\nHost: svc.test\r\n"
    . "Content-Length: 3\r\nContent-Type: text/x-y\r\nConnection: close\r\n"
    . "\r\nabc");
is(hv($u, 'Content-Length'), '3', 'Content-Length is forwarded');
is(hv($u, 'Content-Type'), 'text/x-y', 'Content-Type is forwarded');

# The response: what the backend sent, minus its hop-by-hop headers.
{
    my $r = parse_response(http_get('/hdr', host => 'svc.test'));
    is($r->{headers}{'x-backend'}, 'b1', 'response headers are forwarded');
    is($r->{headers}{server}, 'mg-backend', 'Server included');
}

# The access log: one line per request, with the upstream and request id.
{
    my $port = port(8081);
    my @lines;
    waitfor(sub {
        @lines = grep { /request_id="my-id-42"/ }
            split /\n/, $t->read_file('access.log');
        return @lines;
    }, 5);
    is(scalar @lines, 1, 'the access log has the request with its id');
    like($lines[0] // '', qr{^\S+\ 127\.0\.0\.1\ mesh\ "GET\ /echo\ HTTP/1\.1"\ 200
        \ \d+\ \d+\.\d+\ host="svc\.test"\ upstream="127\.0\.0\.1:$port"
        \ request_id="my-id-42"\ pid=\d+$}x,
        'client, listener, request line, status, host and upstream');
}

$t->stop_and_check;
done_testing();
