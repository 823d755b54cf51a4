
# Copyright (c) tenant_cache authors

# Exact keys and the merged SCAN, against a real Redis:
#  - exact patterns ("user:{user_id}:prefs$", scope bu) queue literal globs,
#    which the worker clears with pipelined UNLINK, several keys per command
#    and no SCAN at all (INFO commandstats), sparing the neighbouring keys
#    ("...:prefs:extra", another user's);
#  - a batch of many tenants' globs (80 SCAN globs, 42 exact ones, tenants
#    with glob metacharacters in their ids) is cleared in ONE SCAN iteration
#    (commandstats: about DBSIZE / scan_count SCAN calls, not one pass per
#    glob) and removes exactly the union of what KEYS <glob> returns for its
#    globs, nothing else: other tenants', other patterns' and unrelated keys
#    stay;
#  - tenant_cache.merge_scans = off (one SCAN pass per glob) leaves exactly
#    the same keys;
#  - with an ACL user that may only touch tenant:1:* keys, one batch holding
#    both tenants' globs (exact and SCAN ones) clears tenant 1's keys while
#    tenant 2's entries stay queued with NOPERM in last_error; once allowed,
#    they are applied;
#  - pg_dump/restore keeps the column filter and the placeholders;
#  - Redis killed in the middle of a merged SCAN (scan_count 10, 205,000
#    keys) and started again empty: every glob of the batch stays queued with
#    a failed attempt; once the keys are loaded again, the globs are applied
#    from cursor 0, every one of their keys gone and no other;
#  - with Redis up, a stream of commits never writes the queue table: the
#    worker applies the globs it reads from the inbox directly (the table's
#    statistics count inbox rows, and no insert into pending).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $password = 'Pa55-for-012-only';
my $redis = TenantCacheTest::Redis->new(name => 'merged');
sub create_acl_user
{
	$redis->cmd('ACL', 'SETUSER', 'tc_worker', 'on', ">$password", '~*',
		'resetchannels', '-@all', '+scan', '+unlink', '+ping');
	return;
}
create_acl_user();
my $pwfile = "$PostgreSQL::Test::Utils::tmp_check/redis_password_012";
open my $fh, '>', $pwfile or die "cannot write $pwfile: $!";
print $fh "$password\n";
close $fh;
chmod 0600, $pwfile or die "chmod $pwfile: $!";

my $node = tc_node(
	'merged',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.redis_username' => 'tc_worker',
		'tenant_cache.redis_password_file' => $pwfile,
		'tenant_cache.poll_interval_ms' => 300,
		'tenant_cache.max_retry_interval_ms' => 1000,
		'tenant_cache.command_timeout_ms' => 2000,
		'tenant_cache.scan_count' => 1000,
	});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE profiles (id int PRIMARY KEY, tenant_id text, client_id int,
                       bu_id int, user_id int, theme text);
CREATE TABLE items (id serial PRIMARY KEY, tenant_id text, client_id int,
                    bu_id int, user_id int);
SELECT tenant_cache.register_dependency('Profile', ARRAY['user:{user_id}:prefs$'], 'bu');
SELECT tenant_cache.register_dependency('Item', ARRAY['dash', 'list'], 'tenant');
SELECT tenant_cache.register_dependency('Item', ARRAY['user:{user_id}:prefs$'], 'bu');
SELECT tenant_cache.watch_table('profiles', 'Profile', 'tenant_id', 'client_id', 'bu_id');
SELECT tenant_cache.watch_table('items', 'Item', 'tenant_id', 'client_id', 'bu_id');
});

# Calls of a Redis command since the last CONFIG RESETSTAT.
sub calls
{
	my ($cmd) = @_;
	foreach ($redis->cmd('INFO', 'commandstats'))
	{
		return $1 if /^cmdstat_\Q$cmd\E:calls=(\d+)/;
	}
	return 0;
}

sub drained
{
	return $node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue');
}

ok(drained(), 'the worker runs');

# 1. Exact keys: UNLINK, several keys per command, no SCAN.
{
	my $n = 200;
	my (@exact, @neighbours);
	foreach my $u (1 .. $n)
	{
		push @exact, "tenant:t1:client:1:bu:1:user:$u:prefs";
		push @neighbours, "tenant:t1:client:1:bu:1:user:$u:prefs:extra",
		  "tenant:t1:client:1:bu:1:user:${u}0000:prefs",
		  "tenant:t1:client:2:bu:1:user:$u:prefs";
	}
	$redis->set_keys(@exact, @neighbours);
	$node->safe_psql('postgres',
		"INSERT INTO profiles SELECT u, 't1', 1, 1, u, 'dark' FROM generate_series(1, $n) u");
	ok(drained(), 'exact: the inserts are applied');
	$redis->set_keys(@exact);
	$redis->cmd('CONFIG', 'RESETSTAT');
	$node->safe_psql('postgres', "UPDATE profiles SET theme = 'light'");
	ok(drained(), "exact: $n updated rows applied");
	is($redis->count_existing(@exact), 0, "exact: all $n keys are gone");
	is($redis->count_existing(@neighbours), scalar(@neighbours),
		'exact: neighbouring keys (longer, other user, other client) stay');
	is(calls('scan'), 0, 'exact: no SCAN was sent');
	my $unlinks = calls('unlink');
	cmp_ok($unlinks, '>=', 1, 'exact: UNLINK was sent');
	cmp_ok($unlinks, '<', 10, "exact: $n keys in few UNLINK commands ($unlinks)");
	$redis->flushall;
}

# 2. Many tenants' globs in one batch: one SCAN pass, exactly the right keys.
my @written = ((map { "w$_" } 1 .. 40), 'x*', 'y[1]');
my @others = ((map { "o$_" } 1 .. 20), 'xa', 'y1', 'x');
my @filler = map { "session:$_" } 1 .. 5000;

sub load_tenant_keys
{
	my @keys = @filler;
	my $u = 0;
	foreach my $t (@written, @others)
	{
		$u++;
		foreach my $c (1 .. 3)
		{
			push @keys, map { "tenant:$t:client:$c:bu:1:$_" }
			  qw(dash:a dash:b list:p other:z dashboard);
		}
		push @keys, "tenant:$t:client:1:bu:1:user:$u:prefs",
		  "tenant:$t:client:1:bu:1:user:$u:prefs:extra",
		  "tenant:$t:client:2:bu:1:user:$u:prefs";
	}
	$redis->flushall;
	$redis->set_keys(@keys);
	return scalar @keys;
}

# The globs a write of each tenant in @written queues, and the union of the
# keys Redis itself matches with them (KEYS uses SCAN MATCH's matcher).
sub expected_deleted
{
	my %gone;
	my $u = 0;
	foreach my $t (@written)
	{
		$u++;
		(my $lit = $t) =~ s/'/''/g;
		foreach my $g (
			split /\n/,
			$node->safe_psql(
				'postgres', qq{
			SELECT tenant_cache.glob_for('dash', '$lit')
			UNION ALL SELECT tenant_cache.glob_for('list', '$lit')
			UNION ALL SELECT tenant_cache.glob_for('user:$u:prefs\$', '$lit', '1', '1')}))
		{
			$gone{$_} = 1 foreach $redis->keys($g);
		}
	}
	return \%gone;
}

sub write_all_tenants
{
	my $values = join ', ', map {
		(my $lit = $written[$_]) =~ s/'/''/g;
		"('$lit', 1, 1, " . ($_ + 1) . ')'
	} 0 .. $#written;
	$node->safe_psql('postgres',
		"INSERT INTO items (tenant_id, client_id, bu_id, user_id) VALUES $values");
	return;
}

sub run_batch
{
	my ($what) = @_;
	my $total = load_tenant_keys();
	my %all = map { $_ => 1 } $redis->keys('*');
	is(scalar keys %all, $total, "$what: $total keys loaded");
	my $gone = expected_deleted();
	cmp_ok(scalar keys %$gone, '>', 200, "$what: the globs match many keys");
	$redis->cmd('CONFIG', 'RESETSTAT');
	write_all_tenants();
	ok(drained(), "$what: the batch is applied");
	my @left = $redis->keys('*');
	my @expected_left = sort grep { !$gone->{$_} } keys %all;
	is_deeply(\@left, \@expected_left,
		"$what: exactly the keys its globs match are gone, every other key stays");
	return (\@left, calls('scan'), $total);
}

my ($left_merged, $scans_merged, $total) = run_batch('merged');
my $passes = int($total / 1000) + 1;
cmp_ok($scans_merged, '<=', 2 * $passes + 4,
	"merged: one SCAN iteration for all globs ($scans_merged SCAN calls for $total keys)");

set_setting($node, 'tenant_cache.merge_scans', 'off');
my ($left_single, $scans_single) = run_batch('one SCAN per glob');
cmp_ok($scans_single, '>=', 2 * @written,
	"merge_scans = off: a SCAN pass per glob ($scans_single SCAN calls)");
is_deeply($left_single, $left_merged, 'merge on and off leave the same keys');
set_setting($node, 'tenant_cache.merge_scans', 'on');

# 3. ACL NOPERM per glob, in one batch holding both tenants' globs.
{
	$redis->flushall;
	my @t1 = map { "tenant:1:client:1:bu:1:$_" } qw(dash:a list:b user:1:prefs);
	my @t2 = map { "tenant:2:client:1:bu:1:$_" } qw(dash:a list:b user:2:prefs);
	$redis->set_keys(@t1, @t2);
	$redis->cmd('ACL', 'SETUSER', 'tc_worker', 'resetkeys', '~tenant:1:*');
	$node->safe_psql('postgres',
		"INSERT INTO items (tenant_id, client_id, bu_id, user_id) VALUES ('1', 1, 1, 1), ('2', 1, 1, 2)");
	my $refused = q{SELECT count(*) FROM tenant_cache.queue
		WHERE last_error LIKE '%NOPERM%' AND attempts >= 1 AND glob LIKE 'tenant:2:%'};
	ok($node->poll_query_until('postgres', "SELECT ($refused) = 3"),
		'ACL: tenant 2\'s three globs (dash, list, exact key) stay queued with NOPERM');
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM tenant_cache.queue WHERE glob NOT LIKE 'tenant:2:%'"),
		'0', 'ACL: tenant 1\'s globs of the same batch are applied');
	is($redis->count_existing(@t1), 0, 'ACL: tenant 1\'s keys are gone');
	is($redis->count_existing(@t2), 3, 'ACL: tenant 2\'s keys are still there');
	$redis->cmd('ACL', 'SETUSER', 'tc_worker', 'resetkeys', '~*');
	ok(drained(), 'ACL: once allowed, tenant 2\'s entries are applied');
	is($redis->count_existing(@t2), 0, 'ACL: and tenant 2\'s keys are gone');
}

# 4. Redis killed mid merged SCAN, started again empty.
{
	set_setting($node, 'tenant_cache.scan_count', '10');
	my @globbed = map {
		my $t = $_;
		map { "tenant:r$t:client:$_:bu:1:dash:k" } 1 .. 250
	} 1 .. 20;
	my @other = map { "session:$_" } 1 .. 200_000;
	my $load = sub {
		$redis->flushall;
		for (my $i = 0; $i < @other; $i += 50_000)
		{
			$redis->set_keys(@other[ $i .. $i + 49_999 ]);
		}
		$redis->set_keys(@globbed);
	};
	$load->();
	my $total_keys = @other + @globbed;
	is($redis->dbsize, $total_keys, 'restart: keys loaded');
	$node->safe_psql('postgres',
		"INSERT INTO items (tenant_id, client_id, bu_id, user_id) "
		  . "SELECT 'r' || t, 1, 1, NULL FROM generate_series(1, 20) t");
	my $mid = wait_until(sub { $redis->dbsize <= $total_keys - 100 }, 60);
	ok(defined $mid, 'restart: the worker is in the middle of the merged SCAN');
	cmp_ok($redis->count_existing(@globbed), '>', 0, 'restart: ... with keys of the globs left');
	my $pid = $redis->pid;
	kill 'KILL', $pid;
	my $gone = wait_until(
		sub {
			return 0 unless kill(0, $pid);
			open my $st, '<', "/proc/$pid/stat" or return 1;
			my $line = <$st> // '';
			return $line =~ /^\d+ \(.*\) Z/s;
		},
		30);
	BAIL_OUT("Redis pid $pid survived SIGKILL") unless defined $gone;
	$redis->{pid} = undef;
	# 20 tenants x (dash, list, user:*:prefs with a NULL user_id).
	my $failed = q{SELECT count(*) FILTER (WHERE attempts >= 1 AND last_error LIKE '%Redis%')
		              = 60 AND count(*) = 60
		FROM tenant_cache.queue WHERE glob LIKE 'tenant:r%'};
	ok($node->poll_query_until('postgres', $failed),
		'restart: all 60 globs of the batch stay queued with a failed attempt');

	# Hold the entries back while Redis starts again and the keys are loaded.
	my $hold = $node->background_psql('postgres');
	$hold->query_safe('BEGIN');
	$hold->query_safe("SELECT id FROM tenant_cache.pending WHERE glob LIKE 'tenant:r%' FOR UPDATE");
	$redis->start;
	create_acl_user();
	$load->();
	is($redis->dbsize, $total_keys, 'restart: every key loaded again');
	$hold->query_safe('ROLLBACK');
	$hold->quit;
	ok(drained(), 'restart: the globs are applied');
	is($redis->count_existing(@globbed), 0, 'restart: every key of the globs is gone');
	is($redis->dbsize, scalar(@other), 'restart: no other key was touched');
}

# 5. pg_dump/restore keeps the column filter (it lives in the triggers'
# arguments) and the placeholders (in the dumped dependency table).
{
	$node->safe_psql(
		'postgres', q{
		SELECT tenant_cache.unwatch_table('profiles');
		SELECT tenant_cache.watch_table('profiles', 'Profile', 'tenant_id', 'client_id',
		                                'bu_id', columns => ARRAY['theme']);
		CREATE DATABASE restored;});
	my $dump = "$PostgreSQL::Test::Utils::tmp_check/012.dump";
	$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
		'dump: pg_dump');
	$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ],
		'dump: pg_restore');
	is($node->safe_psql('restored',
			"SELECT columns FROM tenant_cache.watched_tables WHERE table_name = 'profiles'::regclass"),
		'{theme}', 'dump: the column filter is restored');
	# The worker drains database postgres only: the queue shows what is queued.
	$node->safe_psql('restored', q{
		TRUNCATE tenant_cache.pending, tenant_cache.inbox;
		UPDATE profiles SET user_id = user_id WHERE id = 1;});
	is($node->safe_psql('restored', 'SELECT count(*) FROM tenant_cache.queue'), '0',
		'dump: an UPDATE changing no filter column queues nothing');
	$node->safe_psql('restored', "UPDATE profiles SET theme = 'restored' WHERE id = 1");
	is($node->safe_psql('restored', 'SELECT glob FROM tenant_cache.queue'),
		'tenant:t1:client:1:bu:1:user:1:prefs',
		'dump: an UPDATE of a filter column queues the exact key of the row');
}

# 6. With Redis up, commits go from the inbox to Redis without passing
# through tenant_cache.pending (its hash index would fill with dead entries
# of the same globs).  Table statistics tell: writers' sessions report their
# inbox inserts when they end, the worker its deletes and inserts after its
# batches; once every inbox row inserted has been deleted, the worker has
# reported everything it did with them.
{
	my $counts = sub {
		return split /\|/, $node->safe_psql('postgres', q{
			SELECT i.n_tup_ins, i.n_tup_del, p.n_tup_ins
			FROM pg_stat_user_tables i, pg_stat_user_tables p
			WHERE i.relid = 'tenant_cache.inbox'::regclass
			  AND p.relid = 'tenant_cache.pending'::regclass});
	};
	my $settled = sub {
		my ($min_ins) = @_;
		return wait_until(sub {
			my ($ins, $del) = $counts->();
			return $ins >= $min_ins && $ins == $del;
		}, 30);
	};
	my ($ins0) = $counts->();
	ok(defined $settled->($ins0), 'stream: the inbox is drained and reported');
	my (undef, undef, $pending0) = $counts->();
	# 500 commits, 150 distinct globs (a batch takes up to batch_size, 500).
	my $n = 500;
	my @keys = map { "tenant:s$_:client:1:bu:1:dash:x" } 1 .. 50;
	$redis->set_keys(@keys);
	$node->safe_psql('postgres', join('', map {
		my $t = 1 + $_ % 50;
		"INSERT INTO items (tenant_id, client_id, bu_id, user_id) VALUES ('s$t', 1, 1, 1);\n"
	} 1 .. $n));
	# Each tenant's first commit writes a row; later ones may ride on a row
	# still unread (018 tests that).
	ok(defined $settled->($ins0 + 50), "stream: $n commits read from the inbox and reported");
	my (undef, undef, $pending1) = $counts->();
	is($pending1 - $pending0, 0, 'stream: no entry went through tenant_cache.pending');
	is($redis->count_existing(@keys), 0, 'stream: every tenant\'s keys are gone');
}

$node->stop;
$redis->stop;
done_testing();
