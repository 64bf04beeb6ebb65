#!/usr/bin/perl

# Request smuggling on the wire: every ambiguous or malformed framing gets
# its 4xx and the connection is closed, and the request hidden behind it
# never reaches the upstream.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use IO::Select;
use Test::More;
use Time::HiRes qw(time);
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;

my $backend = $t->run_backend(port => 8081, name => 'b1', verbose => 1);
$t->write_conf(<<'EOF');
gateway = { workers = 1; drain_timeout = 1.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; access_log = "%%TESTDIR%%/access.log"; } );
routes = { mesh = (
    { domains = [ "direct.test" ]; prefix = "/";
      direct_response = { status = 418; body = "tea\n"; }; },
    { domains = [ "redirect.test" ]; prefix = "/";
      redirect = { host = "elsewhere.test"; }; },
    { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend"; response_timeout = 5.0;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$t->run;

# exchange($raw): sends |raw| on a new connection and reads until the
# server closes it or 5 s pass. Returns (bytes read, 1 if closed).
sub exchange {
    my ($raw) = @_;
    my $s = http($raw, start => 1) or return ('', 0);
    my $buf = '';
    my $closed = 0;
    my $sel = IO::Select->new($s);
    my $deadline = time + 5;
    while ((my $left = $deadline - time) > 0) {
        next unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $closed = 1;    # a reset also ends the connection
            last;
        }
        if ($n == 0) {
            $closed = 1;
            last;
        }
    }
    close $s;
    return ($buf, $closed);
}

my $smuggled = "GET /smuggled/%s HTTP/1.1\r\nHost: smuggle.test\r\n\r\n";

# [name, request head up to the blank line (without it), body, status,
#  the upstream may see the head (the error is in the body)]
my @vectors = (
    [ 'cl-and-te', "POST /v/cl-and-te HTTP/1.1\r\nHost: smuggle.test\r\n"
        . "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "0\r\n\r\n", 400 ],
    [ 'te-and-cl', "POST /v/te-and-cl HTTP/1.1\r\nHost: smuggle.test\r\n"
        . "Transfer-Encoding: chunked\r\nContent-Length: 5",
        "0\r\n\r\n", 400 ],
    [ 'conflicting-cl', "POST /v/conflicting-cl HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nContent-Length: 5\r\nContent-Length: 0",
        "hello", 400 ],
    [ 'cl-list', "POST /v/cl-list HTTP/1.1\r\nHost: smuggle.test\r\n"
        . "Content-Length: 0, 5", "hello", 400 ],
    [ 'cl-plus-sign', "POST /v/cl-plus-sign HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nContent-Length: +5", "hello", 400 ],
    [ 'cl-negative', "POST /v/cl-negative HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nContent-Length: -1", "", 400 ],
    [ 'cl-overflow', "POST /v/cl-overflow HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nContent-Length: 18446744073709551621",
        "hello", 400 ],
    [ 'bad-chunk-size', "POST /v/bad-chunk-size HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nTransfer-Encoding: chunked",
        "zz\r\nhello\r\n0\r\n\r\n", 400, 'body' ],
    [ 'overflowing-chunk-size', "POST /v/overflowing-chunk-size HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nTransfer-Encoding: chunked",
        "10000000000000005\r\nhello\r\n0\r\n\r\n", 400, 'body' ],
    [ 'huge-chunk-size', "POST /v/huge-chunk-size HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nTransfer-Encoding: chunked",
        "fffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400, 'body' ],
    [ 'chunk-without-crlf', "POST /v/chunk-without-crlf HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nTransfer-Encoding: chunked",
        "5\r\nhelloXX0\r\n\r\n", 400, 'body' ],
    [ 'obs-fold', "GET /v/obs-fold HTTP/1.1\r\nHost: smuggle.test\r\n"
        . "X-Folded: a\r\n Transfer-Encoding: chunked", "0\r\n\r\n", 400 ],
    [ 'space-before-colon', "POST /v/space-before-colon HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nTransfer-Encoding : chunked",
        "0\r\n\r\n", 400 ],
    [ 'tab-before-colon', "POST /v/tab-before-colon HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nContent-Length\t: 5", "hello", 400 ],
    [ 'bare-cr', "GET /v/bare-cr HTTP/1.1\r\nHost: smuggle.test\r\n"
        . "X-A: 1\rTransfer-Encoding: chunked", "0\r\n\r\n", 400 ],
    [ 'bare-lf', "GET /v/bare-lf HTTP/1.1\r\nHost: smuggle.test\r\n"
        . "X-A: 1\nTransfer-Encoding: chunked", "0\r\n\r\n", 400 ],
    [ 'nul-in-value', "GET /v/nul-in-value HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nX-A: a\0b", "", 400 ],
    [ 'control-in-value', "GET /v/control-in-value HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nX-A: a\x01b", "", 400 ],
    [ 'nul-in-name', "GET /v/nul-in-name HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nX-\0A: b", "", 400 ],
    [ 'missing-host', "GET /v/missing-host HTTP/1.1\r\nX-A: b", "", 400 ],
    [ 'duplicate-host', "GET /v/duplicate-host HTTP/1.1\r\n"
        . "Host: smuggle.test\r\nHost: other.test", "", 400 ],
);

# A control: the same backend and a valid chunked body followed by a
# pipelined request. Both are answered, so the backend log below would show
# a smuggled request if one got through.
{
    my $raw = "POST /control HTTP/1.1\r\nHost: smuggle.test\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        . "GET /control-pipelined HTTP/1.1\r\nHost: smuggle.test\r\n"
        . "Connection: close\r\n\r\n";
    my ($buf, $closed) = exchange($raw);
    my $r1 = parse_response($buf, eof => 0);
    my $r2 = parse_response($r1->{rest});
    is($r1->{status}, 200, 'a valid chunked request is answered');
    like($r2->{body}, qr{^b1 GET /control-pipelined$}m,
        'the request pipelined behind it is answered too');
}

for my $v (@vectors) {
    my ($name, $head, $body, $status) = @$v;
    my ($buf, $closed) = exchange("$head\r\n\r\n$body"
        . sprintf($smuggled, $name));
    my $r = parse_response($buf, eof => 0);
    is($r->{status}, $status, "$name gets $status")
        or diag(explain $buf);
    ok($closed, "$name: the connection is closed after the $status");
    ok($r->{complete} && $r->{rest} eq '',
        "$name: nothing follows the $status response")
        or diag(explain $r->{rest});
}

# A body sent to a route that answers by itself is skipped, never read as
# the next request, whether it arrives with the head or later.
for my $host ('direct.test', 'redirect.test') {
    for my $te (0, 1) {
        my $inner = sprintf($smuggled, "body-$host-$te");
        my $framing = $te ? "Transfer-Encoding: chunked"
            : "Content-Length: " . length $inner;
        my $body = $te ? sprintf("%x\r\n%s\r\n0\r\n\r\n", length $inner,
            $inner) : $inner;
        for my $split (0, 1) {
            my $c = Test::Meshgate::Client->new(port => port(8000));
            my $head = "POST /x HTTP/1.1\r\nHost: $host\r\n$framing\r\n\r\n";
            if ($split) {
                $c->send($head);
                my $r1 = $c->read_response;
                is($r1 && $r1->{status}, $host eq 'direct.test' ? 418 : 301,
                    "$host answers before the body arrives");
                $c->send($body);
            } else {
                $c->send($head . $body
                    . "GET /real HTTP/1.1\r\nHost: x.test\r\n\r\n");
                $c->read_response;
            }
            my $r = $c->read_response(timeout => 2);
            my $what = ($te ? 'a chunked' : 'a') . " body to $host"
                . ($split ? ' sent after the head' : '');
            ok(!$r || $r->{body} eq "b1 GET /real\n",
                "$what is not taken for a request")
                or diag(explain $r);
            $c->close;
        }
    }
}

# What the backend received: never a smuggled request; a head with an
# error in it never; a head whose error is in the body at most once.
my $blog = '';
waitfor(sub {
    $blog = $t->daemon_log($backend);
    return $blog =~ m{GET /control-pipelined };
}, 5);
like($blog, qr{GET /control-pipelined }, 'the backend logs what it gets');
unlike($blog, qr{/smuggled/}, 'no smuggled request reached the backend')
    or diag($blog);
for my $v (@vectors) {
    my ($name, undef, undef, undef, $in_body) = @$v;
    my $n = () = $blog =~ m{ /v/\Q$name\E HTTP}g;
    if ($in_body) {
        cmp_ok($n, '<=', 1, "$name: the backend saw at most the head");
    } else {
        is($n, 0, "$name: the backend saw nothing of it");
    }
}

# The access log: one line per rejected request with its own status and
# request line, no upstream for errors in the head, no smuggled request.
my @lines;
waitfor(sub {
    @lines = split /\n/, read_file("$dir/access.log");
    return @lines >= 2 + @vectors;
}, 5);
is(scalar(grep { m{/smuggled/} } @lines), 0,
    'the access log has no smuggled request');
my $nrejected = grep { m{" 400 } } @lines;
is($nrejected, scalar(@vectors), 'the access log has one 400 per vector')
    or diag(join "\n", @lines);
my $show_log = 0;
for my $v (@vectors) {
    my ($name, $head, undef, $status, $in_body) = @$v;
    my ($method) = $head =~ /^(\S+)/;
    my @l = grep { m{"\Q$method\E /v/\Q$name\E HTTP/1\.1" $status } } @lines;
    is(scalar @l, 1, "$name: the access log names its request and $status")
        or $show_log = 1;
    next if $in_body || !@l;
    like($l[0], qr/upstream="-"/, "$name: the access log has no upstream");
}
diag(join "\n", 'access log:', @lines) if $show_log;
is(scalar(grep { m{" 400 \d+ (\d+\.\d+) } && $1 > 5 } @lines), 0,
    'every 400 line logs a duration under 5 s');
is(scalar(grep { /upstream="127\.0\.0\.1:\d+"/ && m{ /control} } @lines), 2,
    'the two control requests went upstream');
is(scalar(grep { /upstream="127\.0\.0\.1:\d+"/ && !m{ /(?:control|v/|real )} }
    @lines), 0, 'no other request went upstream');

$t->stop_and_check;
done_testing();
