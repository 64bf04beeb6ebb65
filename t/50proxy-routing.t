#!/usr/bin/perl

# Routing: virtual host by Host (exact, longest "*.suffix", "*"), then the
# first route of that host whose prefix or exact path matches; direct
# responses, redirects and 404 when nothing matches.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;

$t->run_backend(port => 8081, name => 'b1');
$t->run_backend(port => 8082, name => 'b2');
$t->write_conf(<<'EOF');
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
    { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%"; routes = "mesh"; },
    { name = "strict"; listen = "127.0.0.1:%%PORT_8001%%"; routes = "strict"; } );
routes = {
    mesh = (
        { domains = [ "exact.test" ]; path = "/exact";
          direct_response = { status = 200; body = "exact path\n"; }; },
        { domains = [ "exact.test" ]; prefix = "/api"; cluster = "c1"; },
        { domains = [ "exact.test", "Alias.Test" ]; prefix = "/"; cluster = "c2"; },
        { domains = [ "*.wild.test" ]; prefix = "/"; cluster = "c1"; },
        { domains = [ "*.deep.wild.test" ]; prefix = "/"; cluster = "c2"; },
        { domains = [ "order.test" ]; prefix = "/"; cluster = "c1"; },
        { domains = [ "order.test" ]; prefix = "/x"; cluster = "c2"; },
        { domains = [ "only.test" ]; prefix = "/only/"; cluster = "c1"; },
        { domains = [ "direct.test" ]; prefix = "/teapot";
          direct_response = { status = 418; body = "short and stout\n";
                              content_type = "text/x-tea"; }; },
        { domains = [ "direct.test" ]; prefix = "/nobody";
          direct_response = { status = 204; }; },
        { domains = [ "redir.test" ]; prefix = "/all";
          redirect = { status = 308; scheme = "https"; host = "new.test:8443";
                       path = "/moved"; }; },
        { domains = [ "redir.test" ]; prefix = "/host";
          redirect = { host = "www.redir.test"; }; },
        { domains = [ "redir.test" ]; prefix = "/scheme";
          redirect = { status = 302; scheme = "https"; }; },
        { domains = [ "redir.test" ]; prefix = "/path";
          redirect = { status = 307; path = "/new/place"; }; },
        { domains = [ "*" ]; prefix = "/"; cluster = "c1"; } );
    strict = (
        { domains = [ "exact.test" ]; prefix = "/"; cluster = "c2"; } );
};
clusters = (
    { name = "c1"; endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); },
    { name = "c2"; endpoints = ( { address = "127.0.0.1:%%PORT_8082%%"; } ); } );
EOF
$t->run;

# get($host, $target, %o): the parsed response to a GET.
sub get {
    my ($host, $target, %o) = @_;
    return parse_response(http_get($target, host => $host, %o));
}

# Which backend answered "host target": "b1 /path", "b2 /path", or the
# status for anything else.
sub via {
    my ($host, $target, %o) = @_;
    my $r = get($host, $target, %o);
    return "status " . ($r->{status} // 'none') unless ($r->{status} // 0) == 200
        && $r->{body} =~ /^(b\d) GET (\S+)\n\z/;
    return "$1 $2";
}

# Virtual hosts
is(via('exact.test', '/page'), 'b2 /page', 'an exact domain routes');
is(via('EXACT.Test', '/page'), 'b2 /page', 'the host compares without case');
is(via('exact.test:8000', '/page'), 'b2 /page', 'a :port suffix is ignored');
is(via('exact.test.', '/page'), 'b2 /page', 'a trailing dot is ignored');
is(via('alias.test', '/page'), 'b2 /page',
    'a second domain of a route (given in upper case) routes');
is(via('a.wild.test', '/w'), 'b1 /w', '*.suffix matches one label');
is(via('a.b.wild.test', '/w'), 'b1 /w', '*.suffix matches two labels');
is(via('x.deep.wild.test', '/w'), 'b2 /w', 'the longest *.suffix wins');
is(via('wild.test', '/w'), 'b1 /w',
    '*.wild.test does not match wild.test (it falls to "*")');
is(via('unknown.test', '/u'), 'b1 /u', 'an unknown host goes to "*"');
is(via('exact.test', '/page', port => port(8001)), 'b2 /page',
    'the second listener uses its own table');
is(via('unknown.test', '/u', port => port(8001)), 'status 404',
    'no virtual host for the host: 404');
{
    my $r = parse_response(http("GET http://exact.test/abs HTTP/1.1\r\n"
        . "Host: unknown.test\r\nConnection: close\r\n\r\n"));
    like($r->{body}, qr{^b2 GET }, 'an absolute-form target routes by its '
        . 'authority, not the Host header');
}

# Routes of a virtual host
is(via('exact.test', '/exact'), 'status 200', 'an exact path matches');
is(get('exact.test', '/exact')->{body}, "exact path\n",
    'and gets its direct response');
is(via('exact.test', '/exact?q=1'), 'status 200',
    'the query string is not part of the path');
is(via('exact.test', '/exact/more'), 'b2 /exact/more',
    'an exact path does not match a longer path');
is(via('exact.test', '/exac'), 'b2 /exac',
    'nor a shorter one');
is(via('exact.test', '/api/v1'), 'b1 /api/v1', 'a prefix matches');
is(via('exact.test', '/apiary'), 'b1 /apiary',
    'a prefix is compared byte for byte');
is(via('exact.test', '/API'), 'b2 /API', 'the path compares with case');
is(via('exact.test', '/ap'), 'b2 /ap', 'a shorter path does not match');
is(via('order.test', '/x/1'), 'b1 /x/1',
    'the first matching route in config order wins');
is(via('only.test', '/only/a'), 'b1 /only/a', 'a route of a lone vhost');
is(via('only.test', '/other'), 'status 404',
    'no route in the virtual host: 404, no fall-through to "*"');
{
    my $r = get('only.test', '/other');
    is($r->{headers}{'content-length'}, length $r->{body},
        'the 404 has a correct Content-Length');
}

# direct_response
{
    my $r = get('direct.test', '/teapot');
    is($r->{status}, 418, 'direct_response sends its status');
    is($r->{body}, "short and stout\n", 'and its body');
    is($r->{headers}{'content-type'}, 'text/x-tea', 'and its content_type');
    is($r->{headers}{'content-length'}, 16, 'with Content-Length');
    $r = get('direct.test', '/teapot', method => 'HEAD');
    is($r->{status}, 418, 'HEAD gets the direct response status');
    is($r->{rest}, '', 'without the body');
    $r = get('direct.test', '/nobody');
    is($r->{status}, 204, 'a direct 204');
    is($r->{rest}, '', 'has no body');
    my $c = Test::Meshgate::Client->new(port => port(8000));
    my $r1 = $c->get('/teapot', host => 'direct.test');
    my $r2 = $c->get('/teapot', host => 'direct.test');
    ok($r1 && $r2 && $r2->{status} == 418,
        'direct responses keep the connection alive');
    $c->close;
}

# redirect
{
    my $r = get('redir.test', '/all/x?a=1&b=2');
    is($r->{status}, 308, 'redirect sends its status');
    is($r->{headers}{location}, 'https://new.test:8443/moved?a=1&b=2',
        'scheme, host and path replaced, the query kept');
    $r = get('redir.test', '/host/y?q');
    is($r->{status}, 301, 'the default redirect status is 301');
    is($r->{headers}{location}, 'http://www.redir.test/host/y?q',
        'a host-only redirect keeps scheme, path and query');
    $r = get('redir.test:8000', '/scheme/z');
    is($r->{status}, 302, 'a 302 redirect');
    is($r->{headers}{location}, 'https://redir.test:8000/scheme/z',
        'a scheme-only redirect keeps the request host and path');
    $r = get('redir.test', '/path/old?x=%20y');
    is($r->{status}, 307, 'a 307 redirect');
    is($r->{headers}{location}, 'http://redir.test/new/place?x=%20y',
        'a path-only redirect keeps the query as sent');
    $r = get('redir.test', '/all', method => 'HEAD');
    is($r->{status}, 308, 'HEAD is redirected too');
}

$t->stop_and_check;
done_testing();
