#!/usr/bin/perl

# Reload (SIGHUP): no request fails and no connection is refused across
# reloads under load; a broken config keeps the running generation; added
# and removed listeners; draining of keep-alive connections.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA ();
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);
use Test::Meshgate;

my $t = Test::Meshgate->new;
my $dir = $t->testdir;

sub conf {
    my (%p) = @_;
    my $body = $p{body} || 'gen-A';
    my $rt = $p{response_timeout} || '5.0';
    my $extra = $p{extra} ? <<'EOF' : '';
              { name = "extra"; listen = "127.0.0.1:%%PORT_8001%%";
                routes = "mesh"; },
EOF
    return <<"EOF";
gateway = { workers = 2; drain_timeout = 1.0; log_level = "info"; };
listeners = (
$extra              { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; access_log = "%%TESTDIR%%/access.log"; } );
routes = { mesh = ( { domains = [ "direct.test" ]; prefix = "/";
                      direct_response = { status = 200; body = "$body\\n"; }; },
                    { domains = [ "*" ]; prefix = "/"; cluster = "backend"; } ); };
clusters = ( { name = "backend"; lb = "round_robin"; connect_timeout = 1.0;
               response_timeout = $rt;
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
}

$t->run_backend(port => 8081, name => 'b1');
$t->write_conf(conf());
$t->run;
ok(waitfor(sub { $t->worker_pids == 2 }, 5), 'generation 1 runs 2 workers');

###########################################################################
# (a) 10 reloads under steady load: nothing fails, nothing is refused.

my $stopfile = "$dir/stop-clients";
my %clients;
$clients{spawn_client($_, 'keepalive')} = $_ for 1 .. 4;
$clients{spawn_client(5, 'new')} = 5;

ok(waitfor(sub { progress() >= 50 }, 10), 'the clients are running')
    or diag('progress ' . progress());

my $reloads = 0;
for my $i (1 .. 10) {
    $t->write_conf(conf(response_timeout => sprintf('%.1f', 5 + $i / 10)));
    $reloads++ if $t->reload;
    # Let traffic flow through the new generation before the next reload.
    my $p = progress();
    waitfor(sub { progress() >= $p + 20 }, 5);
}
is($reloads, 10, 'all 10 reloads started a new generation');
my $p = progress();
waitfor(sub { progress() >= $p + 20 }, 5);

open my $fh, '>', $stopfile or die "$stopfile: $!";
close $fh;
waitfor(sub {
    for my $pid (keys %clients) {
        delete $clients{$pid} if waitpid($pid, WNOHANG) == $pid;
    }
    return !%clients;
}, 15);
is(scalar(keys %clients), 0, 'the clients stopped in time');
if (%clients) {
    kill 'KILL', keys %clients;
    waitpid($_, 0) for keys %clients;
}

my ($total, $failures, @details) = (0, 0);
for my $k (1 .. 5) {
    my ($head, @d) = split /\n/, read_file("$dir/result-$k");
    my ($n, $f) = ($head // '') =~ /^(\d+) (\d+)$/ or do {
        $failures++;
        push @details, "client $k reported nothing";
        next;
    };
    $total += $n;
    $failures += $f;
    push @details, map { "client $k: $_" } @d;
}
is($failures, 0, 'no request failed and no connection was refused across '
    . 'the reloads') or diag(join "\n", @details[0 .. ($#details < 19
        ? $#details : 19)]);
cmp_ok($total, '>', 100, 'the clients made more than 100 requests')
    or diag("total $total");
note("$total requests during 10 reloads");

ok(waitfor(sub { $t->worker_pids == 2 }, 10),
    'the old generations exit once their connections are gone')
    or diag('processes: ' . join ' ', $t->worker_pids);

###########################################################################
# (b) A broken config: the reload fails and the running one keeps serving.

my $direct = sub {
    my $r = parse_response(http_get('/', host => 'direct.test'));
    return $r->{status} ? "$r->{status} $r->{body}" : 'no response';
};
is($direct->(), "200 gen-A\n", 'the direct response before the bad reload');

my @gen_before = sort $t->worker_pids;
my $gen = $t->generation;
my $broken = conf(body => 'gen-B');
my $line = ($broken =~ tr/\n//) + 1;
$broken .= "listenerz = ( );\n";
$t->write_conf($broken);
my $since = $t->log_offset;
is($t->reload, 0, 'a reload with a broken config fails');
my $conf = $t->conf_path;
like($t->log(since => $since), qr/\Q$conf\E:$line: .*listenerz/,
    'the error is logged as FILE:LINE: with the reason');
like($t->log(since => $since), qr/reload failed, keeping generation $gen\b/,
    'the master keeps the running generation');
is($direct->(), "200 gen-A\n", 'the old config keeps serving');
is_deeply([ sort $t->worker_pids ], \@gen_before,
    'the workers are the same processes');
like(http_get('/proxied'), qr/^HTTP\/1\.1 200 .*b1 GET \/proxied/s,
    'proxying keeps working');

$t->write_conf(conf(body => 'gen-B'));
is($t->reload, 1, 'the fixed config reloads');
ok(waitfor(sub { $direct->() eq "200 gen-B\n" }, 5),
    'the new config serves after the reload');

###########################################################################
# (c) Listeners added and removed by a reload.

my $extra = '127.0.0.1:' . port(8001);
ok(!defined http_get('/', port => port(8001), quiet => 1),
    'the extra listener is not there before the reload');
$t->write_conf(conf(body => 'gen-B', extra => 1));
is($t->reload, 1, 'a reload adds a listener');
ok(waitforsocket($extra, 5), 'the added listener accepts connections');
like(http_get('/added', port => port(8001)),
    qr/^HTTP\/1\.1 200 .*b1 GET \/added/s, 'the added listener serves');

$t->write_conf(conf(body => 'gen-B'));
is($t->reload, 1, 'a reload removes the listener');
ok(waitfor(sub {
    !defined http_get('/', port => port(8001), quiet => 1)
        && $Test::Meshgate::ERROR =~ /refused/i }, 5),
    'the removed listener refuses connections after the reload');
like(http_get('/kept'), qr/^HTTP\/1\.1 200 .*b1 GET \/kept/s,
    'the listener that stayed keeps serving');

###########################################################################
# (d) Drain: a busy keep-alive connection is closed after its next
# response, an idle one at drain_timeout (1 s), not at the reload.

ok(waitfor(sub { $t->worker_pids == 2 }, 10), 'only the current '
    . 'generation runs before the drain test');
my $busy = Test::Meshgate::Client->new(port => port(8000));
my $idle = Test::Meshgate::Client->new(port => port(8000));
my $r1 = $busy && $busy->get('/busy-1');
my $r2 = $idle && $idle->get('/idle-1');
ok($r1 && $r1->{status} == 200 && ($r1->{headers}{connection} || '')
    !~ /close/i, 'a keep-alive connection is open before the reload');
ok($r2 && $r2->{status} == 200 && ($r2->{headers}{connection} || '')
    !~ /close/i, 'a second, idle one too');

is($t->reload, 1, 'reload with open keep-alive connections');
my $t0 = time;

sleep(0.3);    # a measurement: the idle connection must survive this long
ok($idle->is_open, 'the idle connection is still open 0.3 s after the reload');

my $r = $busy->get('/busy-2');
is($r && $r->{status}, 200, 'the next request on the busy connection is '
    . 'answered') or diag($busy->error);
like($r && $r->{headers}{connection} || '', qr/\bclose\b/i,
    'the answer carries Connection: close');
ok($busy->wait_closed(2), 'the server closes the busy connection after it');

ok($idle->wait_closed(4), 'the idle connection is closed at drain_timeout');
my $took = time - $t0;
ok($took >= 0.8 && $took < 3.5, 'it is closed about drain_timeout after the '
    . 'reload') or diag(sprintf 'closed after %.2f s', $took);

ok(waitfor(sub { $t->worker_pids == 2 }, 5),
    'the drained generation exits');

$t->stop_and_check;
done_testing();

###########################################################################

# Requests made so far by all clients (one byte each in their progress
# files).
sub progress {
    my $n = 0;
    $n += -s $_ || 0 for glob("$dir/progress-*");
    return $n;
}

# A client process: "keepalive" sends requests (echo, upload, delay) back
# to back on one connection (reconnecting when the server says Connection: close);
# "new" opens a connection per request every few ms. It runs until the
# stop file appears (bounded in time and count) and writes
# "TOTAL FAILURES" and up to 20 failure details to result-K.
sub spawn_client {
    my ($k, $mode) = @_;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    return $pid if $pid;

    my ($n, $fail, @d) = (0, 0);
    my $upload = pattern_bytes(65536);
    my $upload_reply = 'bytes=65536 sha1=' . Digest::SHA::sha1_hex($upload);
    my $note = sub { $fail++; push @d, sprintf('%.3f %s', time, $_[0])
        if @d < 20 };
    open my $prog, '>>', "$dir/progress-$k" or POSIX::_exit(1);
    $prog->autoflush(1);
    my $deadline = time + 60;
    my $c;
    while (!-e $stopfile && time < $deadline && $n < 100000) {
        $n++;
        print $prog '.';
        if ($mode eq 'new') {
            my $raw = http_get("/new-$k-$n", timeout => 5, quiet => 1);
            if (!defined $raw) {
                $note->("request $n: $Test::Meshgate::ERROR");
            } else {
                my $r = parse_response($raw);
                $note->("request $n: "
                    . ($r->{status} ? "status $r->{status}" : 'no response'))
                    unless $r->{complete} && ($r->{status} || 0) == 200;
            }
            sleep(0.003);
            next;
        }
        unless ($c) {
            $c = Test::Meshgate::Client->new(port => port(8000));
            unless ($c) {
                $note->("request $n: $Test::Meshgate::ERROR");
                sleep(0.01);
                next;
            }
        }
        # Echoes prove each answer belongs to its request; uploads keep
        # request bodies in flight; delays keep responses in flight.
        my ($path, $r, $want) = ('', undef, undef);
        if ($n % 3 == 0) {
            $path = '/upload';
            $r = $c->request("POST /upload HTTP/1.1\r\nHost: localhost\r\n"
                . "Content-Length: " . length($upload) . "\r\n\r\n$upload");
            $want = qr/^\Q$upload_reply\E\z/;
        } elsif ($n % 3 == 1) {
            $path = "/echo?k=$k&n=$n";
            $r = $c->get($path);
            $want = qr/^GET \Q$path\E HTTP\/1\.1\r\n/;
        } else {
            $path = '/delay/20';
            $r = $c->get($path);
            $want = qr/^delayed 20\n\z/;
        }
        if (!$r) {
            $note->("request $n ($path) after " . ($c->requests)
                . ' on the connection: ' . $c->error);
            $c->close;
            undef $c;
            next;
        }
        if ($r->{status} != 200) {
            $note->("request $n ($path): status $r->{status}");
        } elsif ($r->{body} !~ $want) {
            $note->("request $n ($path): unexpected body \""
                . substr($r->{body}, 0, 60) . '"');
        }
        if (($r->{headers}{connection} || '') =~ /\bclose\b/i) {
            $c->close;
            undef $c;
        }
    }
    open my $out, '>', "$dir/result-$k.tmp" or POSIX::_exit(1);
    print $out "$n $fail\n", map { "$_\n" } @d;
    close $out;
    rename "$dir/result-$k.tmp", "$dir/result-$k";
    POSIX::_exit(0);
}
