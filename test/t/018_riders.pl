
# Copyright (c) tenant_cache authors

# Commits that ride on an unread inbox row (src/twins.c): a commit whose
# globs all wait in committed inbox rows the worker has not read yet writes
# no row of its own.
#  - Under a stream of commits to a few tenants (pgbench, 4 clients), most
#    commits write no inbox row: the inbox's statistics count far fewer
#    inserts than pgbench committed transactions.
#  - Every commit's keys are still gone after it: while the stream runs,
#    probe transactions UPDATE a row of a streamed tenant, SET a key of that
#    tenant in Redis after the UPDATE and before COMMIT (as a reader caching
#    the old row would), and commit; the key must be gone after the commit.
#    A rider whose glob was applied before its commit would leave it.
#  - A rider held between its decision and its commit (a testing setting)
#    makes the worker wait: a key set while it is held is gone after it;
#    also when the worker is terminated while it waits (its successor
#    waits).
#  - A stream under synchronous_commit = on (riders wait for the WAL flush
#    between their decision and the end of their commit, and the worker
#    waits for them) keeps that guarantee.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $redis = TenantCacheTest::Redis->new(name => 'riders');
my $node = tc_node('riders', redis_port => $redis->port,
	settings => { 'tenant_cache.database' => 'postgres' });

$node->safe_psql('postgres', q{
	CREATE EXTENSION tenant_cache;
	SELECT tenant_cache.register_dependency('item', ARRAY['dash']);
	CREATE TABLE items (id int PRIMARY KEY, tenant_id int, v int NOT NULL DEFAULT 0);
	INSERT INTO items SELECT g, g, 0 FROM generate_series(1, 5) g;
	INSERT INTO items SELECT 100 + g, g, 0 FROM generate_series(1, 5) g;
	SELECT tenant_cache.watch_table('items', 'item');
});
ok(defined wait_until(sub { worker_pid($node) ne '' }, 30), 'worker runs');

my $script = "$PostgreSQL::Test::Utils::tmp_check/018_stream.sql";
open my $fh, '>', $script or die "cannot write $script: $!";
print $fh "\\set t random(1, 5)\nUPDATE items SET v = v + 1 WHERE id = :t;\n";
close $fh;

my $inbox_inserts = sub {
	return $node->safe_psql('postgres', q{
		SELECT n_tup_ins FROM pg_stat_user_tables
		WHERE relid = 'tenant_cache.inbox'::regclass});
};

# One probe: a transaction of tenant $t whose key is set in Redis between
# its UPDATE and its COMMIT.  Returns the seconds until the key was gone
# after the commit, or undef.
my $probe = sub {
	my ($t, $k, $opts) = @_;
	my $key = "tenant:$t:client:1:bu:1:dash:probe$k";
	my $port = $redis->port;
	my $sql = join "\n",
	  ($opts // ''),
	  'BEGIN;',
	  'UPDATE items SET v = v + 1 WHERE id = ' . (100 + $t) . ';',
	  "\\! redis-cli -h 127.0.0.1 -p $port SET $key cached >/dev/null",
	  'COMMIT;', '';
	$node->safe_psql('postgres', $sql);
	my $committed = time();
	return wait_until(sub { $redis->exists($key) == 0 }, 10, $committed);
};

sub stream
{
	my ($label, $seconds, $sync) = @_;
	my $ins0 = $inbox_inserts->();
	my ($out, $err) = ('', '');
	my $bench = IPC::Run::start(
		[
			'pgbench', '-n', '-c', '4', '-j', '2', '-T', $seconds,
			'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err);
	my ($probes, $gone, $worst) = (0, 0, 0);
	my $deadline = time() + $seconds - 1;
	usleep(300_000);
	while (time() < $deadline)
	{
		my $lat = $probe->(1 + $probes % 5, "$label$probes",
			"SET synchronous_commit = $sync;");
		$probes++;
		next unless defined $lat;
		$gone++;
		$worst = $lat if $lat > $worst;
	}
	$bench->finish;
	my ($txns) = $out =~ /number of transactions actually processed: (\d+)/;
	ok(defined $txns && $txns > 1000, "$label: pgbench committed transactions")
	  or diag("pgbench: $out $err");
	is($gone, $probes, "$label: every probe's key is gone after its commit");
	note(sprintf '%s: %d probes, slowest key gone %.3f s after its commit',
		$label, $probes, $worst);
	# Writers' sessions report their inbox inserts when they end.
	my $rows;
	wait_until(sub {
		$rows = $inbox_inserts->() - $ins0;
		$node->safe_psql('postgres',
			'SELECT NOT EXISTS (SELECT 1 FROM tenant_cache.inbox)') eq 't';
	}, 30);
	$rows = $inbox_inserts->() - $ins0;
	note("$label: $txns pgbench commits and $probes probes wrote $rows inbox rows");
	return ($txns // 0, $rows);
}

$node->safe_psql('postgres', "ALTER SYSTEM SET synchronous_commit = off");
$node->reload;
my ($txns, $rows) = stream('sync off', 6, 'off');
ok($rows < $txns / 4,
	"most commits ride: $rows inbox rows for $txns commits");

# A rider held between its decision and its commit (testing setting): the
# worker, reading meanwhile the row it rode on, waits for it.  A key set
# while the rider is held (by a reader that still sees the old row) is gone
# after the rider's commit; a worker that applied the row at once, before
# the key was set, would leave it.  The worker is kept busy with a batch of
# another tenant (held 300 ms before its commit) while the row is written
# and the rider commits, so that the row is still unread then.
TenantCacheTest::set_setting($node, 'tenant_cache.debug_pause_before_commit_ms', '300');

# In the background: a commit of tenant 2 (the worker's batch for it is
# held), then one of tenant 1 (its row unread), then one of tenant 1 again,
# which rides and is held $pause_ms.  Returns the harness.
sub held_rider
{
	my ($pause_ms) = @_;
	my ($out, $err) = ('', '');
	return IPC::Run::start(
		[
			'psql', '-X', '-q', '-h', $node->host, '-p', $node->port,
			'-d', 'postgres',
			'-c', 'UPDATE items SET v = v + 1 WHERE id = 2',
			'-c', 'SELECT pg_sleep(0.05)',
			'-c', 'UPDATE items SET v = v + 1 WHERE id = 1',
			'-c', "SET tenant_cache.debug_pause_after_ride_ms = $pause_ms",
			'-c', 'UPDATE items SET v = v + 1 WHERE id = 101'
		],
		'>', \$out, '2>', \$err);
}

{
	my ($rode, $gone, $attempts) = (0, 0, 0);
	while ($rode < 3 && $attempts < 10)
	{
		$attempts++;
		my $key = "tenant:1:client:1:bu:1:dash:held$attempts";
		my $start = time();
		my $psql = held_rider(600);
		usleep(500_000);
		$redis->cmd('SET', $key, 'stale');
		$psql->finish;
		next if time() - $start < 0.65;	# did not ride
		$rode++;
		$gone++ if defined wait_until(sub { !$redis->exists($key) }, 10);
		usleep(400_000);
	}
	is($rode, 3, "held riders: 3 commits rode ($attempts attempts)");
	is($gone, $rode, 'held riders: the key set while each was held is gone after its commit');
}

# The same with the worker terminated while it waits for the held rider:
# the worker started in its place waits for it too before applying.
{
	my $key = 'tenant:1:client:1:bu:1:dash:restarted';
	my $old_pid = worker_pid($node);
	my $start = time();
	my $psql = held_rider(4000);
	usleep(700_000);
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)");
	ok(defined wait_until(sub {
		my $pid = worker_pid($node);
		$pid ne '' && $pid ne $old_pid;
	}, 10), 'restarted: a new worker runs while the rider is held');
	usleep(500_000);
	$redis->cmd('SET', $key, 'stale');
	$psql->finish;
	cmp_ok(time() - $start, '>=', 4, 'restarted: the commit rode and was held');
	ok(defined wait_until(sub { !$redis->exists($key) }, 10),
		'restarted: the key set while it was held is gone after its commit');
}
TenantCacheTest::set_setting($node, 'tenant_cache.debug_pause_before_commit_ms', '0');

$node->safe_psql('postgres', "ALTER SYSTEM SET synchronous_commit = on");
$node->reload;
stream('sync on', 5, 'on');

$node->stop;
$redis->stop;
done_testing();
