#!/usr/bin/perl

# Tunnels: Upgrade (WebSocket) only on routes with upgrade = true, else the
# Upgrade header is dropped and the request proxied as plain HTTP; CONNECT
# only on routes with connect = true, else 403.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA qw(sha1_base64);
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use IO::Select;
use Test::More;
use Time::HiRes qw(time);
use Test::Meshgate;

my $t = Test::Meshgate->new;

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = (
    { domains = [ "ws.test" ]; prefix = "/"; cluster = "backend";
      upgrade = true; },
    { domains = [ "tunnel.test" ]; prefix = "/"; cluster = "backend";
      connect = true; },
    { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend"; response_timeout = 5.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$t->run;
my $port = port(8000);

# read_some($s, \$buf, $want_len or qr//, $timeout): reads until |buf|
# holds |want| bytes (or matches), EOF or the deadline. Returns 'ok',
# 'eof' or 'timeout'.
sub read_some {
    my ($s, $buf, $want, $timeout) = @_;
    my $sel = IO::Select->new($s);
    my $deadline = time + ($timeout || 5);
    while (1) {
        return 'ok' if ref $want ? $$buf =~ $want : length $$buf >= $want;
        my $left = $deadline - time;
        return 'timeout' if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($s, $$buf, 1 << 20, length $$buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return 'eof';
        }
        return 'eof' if $n == 0;
    }
}

my $key = 'dGhlIHNhbXBsZSBub25jZQ==';
my $ws_req = "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
    . "Connection: Upgrade\r\nSec-WebSocket-Key: $key\r\n"
    . "Sec-WebSocket-Version: 13\r\n\r\n";

# Upgrade on an upgrade route
{
    my $s = http(sprintf($ws_req, 'ws.test'), start => 1);
    my $buf = '';
    read_some($s, \$buf, qr/\r\n\r\n/, 5);
    my $r = parse_response($buf, eof => 0);
    is($r->{status}, 101, 'an upgrade route answers 101');
    like($r->{headers}{upgrade} // '', qr/^websocket$/i, 'Upgrade: websocket');
    like($r->{headers}{connection} // '', qr/\bupgrade\b/i,
        'Connection: Upgrade');
    is($r->{headers}{'sec-websocket-accept'},
        sha1_base64($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11') . '=',
        'the handshake headers pass both ways');
    my $data = substr($buf, index($buf, "\r\n\r\n") + 4);

    http("hello tunnel", socket => $s, start => 1);
    read_some($s, \$data, 12, 5);
    is($data, 'hello tunnel', 'bytes go through the tunnel and back');

    my $big = join '', map { chr(($_ * 7) % 256) } 0 .. 65535;
    $big x= 16;    # 1 MiB of binary data
    $data = '';
    my $w = IO::Select->new($s);
    my $off = 0;
    my $deadline = time + 10;
    # Write and read at once: the echo would block a write-only client.
    while (($off < length $big || length $data < length $big)
        && time < $deadline)
    {
        if ($off < length $big && $w->can_write(0)) {
            my $n = syswrite($s, $big, 65536, $off);
            $off += $n if $n;
        }
        read_some($s, \$data, length($data) + 1, 0.01);
    }
    ok($data eq $big, '1 MiB of binary data is echoed intact')
        or diag(length $data);

    shutdown($s, 1);
    my $rest = '';
    is(read_some($s, \$rest, 1, 5), 'eof',
        'a half-close from the client ends the tunnel');
    close $s;
}

# Upgrade on a route without upgrade = true: a plain request.
{
    my $r = parse_response(http(sprintf($ws_req, 'plain.test')
        =~ s/\r\n\r\n$/\r\nX-Keep: 1\r\n\r\n/r, timeout => 5, keep => 1));
    is($r->{status}, 400,
        'without upgrade = true the backend sees no Upgrade (its 400)');
    is($r->{body}, "upgrade expected\n", 'the answer is the backend\'s');

    my $c = Test::Meshgate::Client->new(port => $port);
    $r = $c->request("GET /echo HTTP/1.1\r\nHost: plain.test\r\n"
        . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: $key\r\n\r\n");
    is($r && $r->{status}, 200, 'an Upgrade request to /echo is proxied');
    unlike($r ? $r->{body} : '', qr/^Upgrade:/mi,
        'without the Upgrade header');
    like($r ? $r->{body} : '', qr/^Sec-WebSocket-Key:/mi,
        'other headers are kept');
    $r = $c->get('/after', host => 'plain.test');
    is($r && $r->{body}, "b1 GET /after\n",
        'and the connection stays plain HTTP');
    $c->close;
}

# CONNECT
{
    my $s = http("CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443"
        . "\r\n\r\n", start => 1);
    my $buf = '';
    read_some($s, \$buf, qr/\r\n\r\n/, 5);
    my $r = parse_response($buf, head => 1);
    is($r->{status}, 200, 'CONNECT on a connect route gets 200')
        or diag($buf);
    my $data = substr($buf, index($buf, "\r\n\r\n") + 4);
    is($data, '', 'and nothing else');
    $data = '';

    # The tunnel reaches the cluster endpoint: speak HTTP to the backend,
    # which echoes the head exactly as it arrives.
    my $inner = "GET /echo HTTP/1.1\r\nHost: inner\r\nConnection: close\r\n\r\n";
    http($inner, socket => $s, start => 1);
    is(read_some($s, \$data, 1 << 30, 5), 'eof',
        'the backend closes the tunnel after its answer');
    $r = parse_response($data);
    is($r->{status}, 200, 'the request inside the tunnel is answered');
    is($r->{body}, $inner,
        'by the cluster endpoint, byte for byte as sent (no proxy headers)');
    close $s;
}
{
    my $raw = http("CONNECT plain.test:443 HTTP/1.1\r\nHost: plain.test:443"
        . "\r\n\r\n", timeout => 5, keep => 1);
    my $r = parse_response($raw, eof => 0);
    is($r->{status}, 403, 'CONNECT on a route without connect = true: 403');
    $raw = http("CONNECT ws.test:443 HTTP/1.1\r\nHost: ws.test:443\r\n\r\n",
        timeout => 5, keep => 1);
    is(parse_response($raw, eof => 0)->{status}, 403,
        'an upgrade route does not allow CONNECT either');
}

$t->stop_and_check;
done_testing();
