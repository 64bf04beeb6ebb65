#!/usr/bin/perl

# The command line: -v, -h, -t with good and bad configs, -p.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Meshgate;

my $t = Test::Meshgate->new;

my $good = <<'EOF';
gateway = { workers = 1; drain_timeout = 2.0; log_level = "info"; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/";
                      direct_response = { status = 200; body = "ok\n"; }; } ); };
clusters = ( { name = "backend";
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF

$t->write_conf($good);
my $goodconf = $t->write_file('good.conf', $good);

# -v and -h

my $r = $t->run_binary('-v');
is($r->{status}, 0, '-v exits 0');
like($r->{stdout} . $r->{stderr}, qr/meshgate\S*\s+v?\d+\.\d+/,
    '-v prints the name and a version');

$r = $t->run_binary('-h');
is($r->{status}, 0, '-h exits 0');
my $usage = $r->{stdout} . $r->{stderr};
like($usage, qr/usage/i, '-h prints a usage');
like($usage, qr/-c\b/, 'the usage mentions -c');
like($usage, qr/-t\b/, 'the usage mentions -t');
like($usage, qr/-p\b/, 'the usage mentions -p');

# -t with a good config

$r = $t->run_binary('-t', '-c', $goodconf);
is($r->{status}, 0, '-t accepts a good config with exit code 0')
    or diag($r->{stderr});
ok(!waitforsocket('127.0.0.1:' . port(8000), 0.2),
    '-t does not leave a listener behind');

# -t with bad configs: each error reads FILE:LINE: reason.

my $bad = $t->write_file('bad-key.conf', <<'EOF');
gateway = { workers = 1; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh";
                no_such_key = 1; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/";
                      direct_response = { status = 200; }; } ); };
EOF
$r = $t->run_binary('-t', '-c', $bad);
is($r->{status}, 1, '-t rejects an unknown key with exit code 1');
like($r->{stderr}, qr/\Q$bad\E:4: .*no_such_key/,
    'the unknown key is reported as FILE:LINE: with its name');

$bad = $t->write_file('bad-syntax.conf', <<'EOF');
gateway = { workers = 1; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/";
                      direct_response = { status = 200; }; } ); };
EOF
$r = $t->run_binary('-t', '-c', $bad);
is($r->{status}, 1, '-t rejects a syntax error with exit code 1');
like($r->{stderr}, qr/\Q$bad\E:3: \S/,
    'the syntax error is reported as FILE:LINE: reason');

$bad = $t->write_file('bad-ref.conf', <<'EOF');
gateway = { workers = 1; };
listeners = ( { name = "mesh"; listen = "127.0.0.1:%%PORT_8000%%";
                routes = "mesh"; } );
routes = { mesh = ( { domains = [ "*" ]; prefix = "/";
                      cluster = "nowhere"; },
                    { domains = [ "a.test" ]; prefix = "/";
                      cluster = "elsewhere"; } ); };
clusters = ( { name = "backend";
               endpoints = ( { address = "127.0.0.1:%%PORT_8081%%"; } ); } );
EOF
$r = $t->run_binary('-t', '-c', $bad);
is($r->{status}, 1, '-t rejects a route to an unknown cluster');
like($r->{stderr}, qr/\Q$bad\E:5: .*nowhere/,
    'the first unknown cluster is reported with its line');
like($r->{stderr}, qr/\Q$bad\E:7: .*elsewhere/,
    'the second unknown cluster is reported too (all errors, not the first)');

$r = $t->run_binary('-t', '-c', $t->testdir . '/missing.conf');
is($r->{status}, 1, '-t fails on a missing config file');
like($r->{stderr}, qr/missing\.conf/, 'the missing file is named');

$r = $t->run_binary('-x');
isnt($r->{status}, 0, 'an unknown option fails');

# -p PIDFILE: written with the master PID, removed on a graceful stop.

my $pidfile = $t->testdir . '/meshgate.pid';
$t->run(args => [ '-p', $pidfile ]);
ok(waitfor(sub { -s $pidfile }, 5), '-p writes the pid file');
my $pid = read_file($pidfile);
$pid =~ s/\s+$//;
is($pid, $t->master_pid, 'the pid file holds the master PID');

like(http_get('/'), qr/^HTTP\/1\.1 200 .*\r\n\r\nok\n\z/s,
    'the started gateway serves');

my $st = $t->stop;
is($st, 0, 'a graceful stop exits with code 0');
ok(!-e $pidfile, 'the pid file is removed on a graceful stop');
like($t->log, qr/exiting/, 'the master logs "exiting"');

$t->stop_and_check;
done_testing();
