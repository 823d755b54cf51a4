
# Copyright (c) tenant_cache authors

# Redis faults in the middle of a long SCAN.  One glob matches 200,000 keys
# and scan_count is 10, so applying it takes thousands of round trips and the
# faults below hit the worker while it iterates:
#  - Redis stalled (SIGSTOP) mid-SCAN, twice in a row: each stall ends in a
#    timeout after command_timeout_ms, the entry is kept (attempts, "timed
#    out"), the worker reconnects once Redis answers and the glob is applied
#    (every key gone, the queue empty, other keys kept);
#  - pg_ctl stop -m fast while the worker waits on a stalled Redis finishes
#    within command_timeout_ms + 2 s, and the entry survives it;
#  - the postmaster killed with SIGKILL while the worker waits on a stalled
#    Redis (command_timeout_ms raised to 20 s): the worker exits at once
#    (WL_EXIT_ON_PM_DEATH), no process of the cluster is left behind, and the
#    entry is applied after a restart;
#  - Redis killed (SIGKILL) mid-SCAN, running or stalled, and started again
#    empty: the entry stays queued (attempts >= 1) while Redis is away; once
#    every key is loaded again the glob is applied from cursor 0 and its
#    entry deleted only after a full iteration: every key is gone.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# Find TenantCacheTest whatever prove's -I flags are.
use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $cmd_timeout_ms = 1500;
my $max_retry_ms = 1000;
my $n_big = 200_000;

my ($faults, $expected, $lost) = (0, 0, 0);

my $redis = TenantCacheTest::Redis->new(name => 'faults');
my $node = tc_node(
	'redis_faults',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.poll_interval_ms' => 500,
		'tenant_cache.command_timeout_ms' => $cmd_timeout_ms,
		'tenant_cache.connect_timeout_ms' => 1000,
		'tenant_cache.max_retry_interval_ms' => $max_retry_ms,
		'tenant_cache.scan_count' => 10,
	});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id serial PRIMARY KEY, tenant_id int, client_id int,
                     bu_id int, name text);
SELECT tenant_cache.register_dependency('People', ARRAY['dash'], 'tenant');
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES (7, 1, 1, 'setup');
});
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'queue drained after the setup: the worker is connected');

my $glob = 'tenant:7:client:*:bu:*:dash*';
my @big = map { "tenant:7:client:$_:bu:1:dash:k" } 1 .. $n_big;
my @keep = (
	(map { "tenant:8:client:$_:bu:1:dash:k" } 1 .. 1000),
	'tenant:70:client:1:bu:1:dash:k', 'tenant:7:client:1:bu:1:other:k',
	'session:abc');
my $total = @big + @keep;

# Load every key (in chunks, one redis-cli --pipe each).
sub load_keys
{
	my $t0 = Time::HiRes::time();
	for (my $i = 0; $i < @big; $i += 50_000)
	{
		my $j = $i + 49_999;
		$j = $#big if $j > $#big;
		$redis->set_keys(@big[ $i .. $j ]);
	}
	$redis->set_keys(@keep);
	note sprintf('%d keys loaded in %.3f s', $total, Time::HiRes::time() - $t0);
	return;
}

# The glob's keys still there, counted on the server: DBSIZE less the others.
sub big_left
{
	return $redis->dbsize - $redis->count_existing(@keep);
}

sub write_tenant7
{
	$node->safe_psql('postgres',
		q{INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES (7, 1, 1, 'w')});
	return;
}

# Wait until the worker has UNLINKed at least $n keys below $from: it is in
# the middle of the glob's SCAN.
sub wait_mid_scan
{
	my ($from, $n) = @_;
	my $left;
	my $secs = wait_until(
		sub {
			$left = $redis->dbsize;
			return $left <= $from - $n;
		},
		60);
	return defined $secs ? $left : undef;
}

my $waiting_on_redis = q{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'tenant_cache worker'
	  AND state = 'active' AND xact_start IS NOT NULL
	  AND wait_event_type = 'Extension'};

sub the_entry
{
	my @rows = grep { $_->{glob} eq $glob } queue_rows($node);
	return $rows[0];
}

# Check that every key of the glob is gone and the others kept, counting
# what is left for the summary.
sub check_applied
{
	my ($what, $since) = @_;
	my $secs = wait_until(sub { big_left() == 0 && queue_count($node) == 0 },
		120, $since);
	ok(defined $secs, "$what: every key of the glob is gone and the queue is empty");
	diag sprintf('%s: applied %.3f s after the fault ended', $what, $secs // -1);
	my $left = big_left();
	$expected += @big;
	$lost += $left;
	is($left, 0, "$what: no key of the glob is left");
	is($redis->count_existing(@keep), scalar(@keep), "$what: the other keys are kept");
	return;
}

# Is the process there?  An orphan's exit is reaped by init, which may take
# its time (or never come, in a container): a zombie counts as gone.
sub alive
{
	my ($pid) = @_;
	return 0 unless kill(0, $pid);
	open my $fh, '<', "/proc/$pid/stat" or return 0;
	my $stat = <$fh> // '';
	return $stat !~ /^\d+ \(.*\) Z/s;
}

# Kill Redis with SIGKILL (no snapshot) and forget it, for start() to run a
# new one on the same port.
sub kill_redis
{
	my $pid = $redis->pid;
	kill 'KILL', $pid;
	kill 'CONT', $pid;
	my $gone = wait_until(sub { !alive($pid) }, 30);
	BAIL_OUT("Redis pid $pid survived SIGKILL") unless defined $gone;
	$redis->{pid} = undef;
	$redis->{paused} = 0;
	return;
}

subtest 'Redis stalled mid-SCAN twice: timeouts, then the glob is applied' => sub {
	load_keys();
	is($redis->dbsize, $total, 'all keys loaded');
	my $t_commit = Time::HiRes::time();
	write_tenant7();

	my $attempts_before = 0;
	my $from = $total;
	foreach my $stall (1, 2)
	{
		my $left = wait_mid_scan($from, 2000);
		ok(defined $left, "stall $stall: the worker is UNLINKing the glob's keys");
		$redis->pause;
		$faults++;
		my $t_pause = Time::HiRes::time();
		note sprintf('stall %d: Redis paused %.3f s after the commit with %d keys left',
			$stall, $t_pause - $t_commit, $left // -1);

		ok($node->poll_query_until('postgres', $waiting_on_redis),
			"stall $stall: the worker waits on Redis");
		my $row;
		my $secs = wait_until(
			sub {
				$row = the_entry();
				return $row
				  && $row->{attempts} > $attempts_before
				  && ($row->{last_error} // '') =~ /timed out/;
			},
			60, $t_pause);
		ok(defined $secs, "stall $stall: the SCAN timed out and the entry is kept");
		diag sprintf('stall %d: failure recorded %.3f s after the pause '
			  . '(command_timeout_ms = %d): attempts=%s, last_error=%s',
			$stall, $secs // -1, $cmd_timeout_ms, $row->{attempts} // '?',
			$row->{last_error} // '?');
		cmp_ok($secs // 1e9, '<=', $cmd_timeout_ms / 1000 + 5,
			"stall $stall: the command gave up within command_timeout_ms (+5 s slack)");
		cmp_ok($row->{attempts} // 0, '>=', $stall, "stall $stall: attempts counted");
		$attempts_before = $row->{attempts} // 0;

		$redis->resume;
		# Redis now runs what was already in its socket buffers; the worker
		# has given up on that connection and begins from cursor 0 again.
		$from = $redis->dbsize;
		cmp_ok($from, '>', @keep, "stall $stall: the SCAN had not finished: keys are left");
		note "stall $stall: $from keys in Redis right after the resume";
	}
	check_applied('after two stalls', Time::HiRes::time());
	my $log = slurp_file($node->logfile);
	like($log, qr/tenant_cache worker: Redis at 127\.0\.0\.1:\d+ works again/,
		'the worker logged that Redis works again');
};

subtest 'fast shutdown while the worker waits on a stalled Redis' => sub {
	load_keys();
	my $offset = -s $node->logfile;
	write_tenant7();
	ok(defined wait_mid_scan($total, 2000), 'the worker is in the middle of the SCAN');
	$redis->pause;
	$faults++;
	ok($node->poll_query_until('postgres', $waiting_on_redis),
		'the worker waits on Redis');

	my $t0 = Time::HiRes::time();
	$node->stop('fast');
	my $stop_secs = Time::HiRes::time() - $t0;
	diag sprintf('pg_ctl stop -m fast with Redis stalled mid-SCAN: %.3f s '
		  . '(command_timeout_ms = %d)', $stop_secs, $cmd_timeout_ms);
	cmp_ok($stop_secs, '<', $cmd_timeout_ms / 1000 + 2,
		'fast shutdown finishes within command_timeout_ms + 2 s');
	ok($node->log_contains(
			qr/terminating background worker "tenant_cache worker" due to administrator command/,
			$offset),
		'the worker was terminated by the shutdown');
};

subtest 'postmaster killed while the worker waits on a stalled Redis' => sub {
	# A command timeout far longer than the wait below: only postmaster
	# death can end the worker's wait in time.
	$node->append_conf('postgresql.conf', "tenant_cache.command_timeout_ms = 20000\n");
	$node->start;
	my $worker;
	ok( $node->poll_query_until('postgres', $waiting_on_redis),
		'the restarted worker takes the queued entry and waits on the stalled Redis');
	$worker = worker_pid($node);
	my $pm = $node->{_pid};
	like($worker, qr/^\d+$/, "worker pid $worker, postmaster pid $pm");

	# Every child of the postmaster, to check that none is left behind.
	my @children;
	foreach my $stat (glob '/proc/[0-9]*/stat')
	{
		open my $fh, '<', $stat or next;
		my $line = <$fh> // '';
		close $fh;
		push @children, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) /s && $2 == $pm;
	}
	note 'children of the postmaster: ' . join(' ', @children);
	ok((grep { $_ == $worker } @children), 'the worker is a child of the postmaster');

	my $t0 = Time::HiRes::time();
	kill 'KILL', $pm;
	$faults++;
	my $secs = wait_until(sub { !alive($worker) }, 60, $t0);
	ok(defined $secs, 'the worker exits after the postmaster died');
	diag sprintf('worker gone %.3f s after SIGKILL of the postmaster '
		  . '(command_timeout_ms = 20000)', $secs // -1);
	cmp_ok($secs // 1e9, '<', 5,
		'within 5 s: it did not sit out its 20 s Redis command');
	my $all = wait_until(sub { !grep { alive($_) } @children }, 60, $t0);
	ok(defined $all, 'no process of the cluster is left behind');
	diag sprintf('every child of the postmaster gone %.3f s after its SIGKILL',
		$all // -1);
	# The orphaned postmaster is reaped by init; until then its PID still
	# exists (a zombie), and a new postmaster would take the lock file for
	# that of a running one.
	my $reaped = wait_until(sub { !kill(0, $pm) }, 60, $t0);
	ok(defined $reaped, 'the postmaster is gone');
	note sprintf('postmaster reaped %.3f s after its SIGKILL', $reaped // -1);
	$node->_update_pid(-1);
	ok(!defined $node->{_pid}, 'the test harness sees no postmaster');

	$node->append_conf('postgresql.conf',
		"tenant_cache.command_timeout_ms = $cmd_timeout_ms\n");
	$node->start;
	my $t_resume = Time::HiRes::time();
	$redis->resume;
	check_applied('after fast shutdown and postmaster SIGKILL', $t_resume);
};

# Kill Redis mid-SCAN ($paused: while it is stalled), start it again empty,
# reload every key while the entry is held back, then let the worker go.
sub restart_mid_scan
{
	my ($what, $paused) = @_;
	load_keys();
	is($redis->dbsize, $total, "$what: all keys loaded");
	write_tenant7();
	ok(defined wait_mid_scan($total, 2000), "$what: the worker is in the middle of the SCAN");
	if ($paused)
	{
		$redis->pause;
		ok($node->poll_query_until('postgres', $waiting_on_redis),
			"$what: the worker waits on the stalled Redis");
	}
	my $t_kill = Time::HiRes::time();
	kill_redis();
	$faults++;

	my $row;
	my $secs = wait_until(
		sub { $row = the_entry(); return $row && $row->{attempts} >= 1; }, 60, $t_kill);
	ok(defined $secs, "$what: the entry is still queued, with a failed attempt");
	diag sprintf('%s: failure recorded %.3f s after the kill: attempts=%s, last_error=%s',
		$what, $secs // -1, $row->{attempts} // '?', $row->{last_error} // '?');
	like($row->{last_error} // '', qr/Redis/, "$what: last_error says what failed");

	# Hold the entry back (the worker takes entries FOR UPDATE SKIP LOCKED)
	# while Redis is started again and every key loaded: otherwise the worker
	# could finish its iteration before the last keys are in.
	my $hold = $node->background_psql('postgres');
	$hold->query_safe('BEGIN');
	my $held = $hold->query_safe(
		"SELECT id FROM tenant_cache.pending WHERE glob = '$glob' FOR UPDATE");
	is($held, $row->{id}, "$what: the entry is held back");
	$redis->start;
	is($redis->dbsize, 0, "$what: Redis started again, empty");
	load_keys();
	is($redis->dbsize, $total, "$what: every key loaded again");
	ok(the_entry(), "$what: the entry is still queued");
	my $t_release = Time::HiRes::time();
	$hold->query_safe('ROLLBACK');
	$hold->quit;
	check_applied($what, $t_release);
	return;
}

subtest 'Redis killed mid-SCAN and started again' => sub {
	restart_mid_scan('running Redis killed', 0);
};

subtest 'stalled Redis killed mid-SCAN and started again' => sub {
	restart_mid_scan('stalled Redis killed', 1);
};

is(queue_count($node), '0', 'the queue is empty at the end');
fault_summary($faults, $expected, $lost);

$node->stop;
$redis->stop;
done_testing();
