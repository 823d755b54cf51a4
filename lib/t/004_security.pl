
# Copyright (c) tenant_cache authors

# Security and tenant isolation against a real Redis:
#  - the worker authenticates as a least-privilege ACL user whose password is
#    read from a file; a file readable by others is refused; a wrong password
#    backs off; the password appears in no log, setting, view or error;
#  - a database and a login role with a hostile search_path (trojan operators,
#    functions and tables named like the extension's, raising WARNINGs) do not
#    redirect the worker, the triggers or the administration functions;
#  - glob injection: a write by a tenant whose id is full of glob
#    metacharacters, control characters or 10 kB long clears that tenant's
#    keys and no other key; an id containing the key_format separator is
#    refused;
#  - a per-key ACL refusal (NOPERM) keeps that tenant's entry queued with the
#    reason, while the other tenant's invalidations go on.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $password = 'Pa55-w0rd-for-tc-only';
my $wrong_password = 'Wr0ng-pa55-not-this';
my $max_retry_ms = 1000;

my $redis = TenantCacheTest::Redis->new(name => 'sec');
$redis->cmd('ACL', 'SETUSER', 'tc_worker', 'on', ">$password", '~tenant:*',
	'resetchannels', '-@all', '+scan', '+unlink', '+ping');

my $pwfile = "$PostgreSQL::Test::Utils::tmp_check/redis_password";
sub write_password
{
	my ($text, $mode) = @_;
	open my $fh, '>', $pwfile or die "cannot write $pwfile: $!";
	print $fh "$text\n";
	close $fh;
	chmod $mode, $pwfile or die "chmod $pwfile: $!";
	return;
}
write_password($password, 0644);

my $node = tc_node(
	'security',
	redis_port => $redis->port,
	start => 0,
	settings => {
		'tenant_cache.redis_username' => 'tc_worker',
		'tenant_cache.redis_password_file' => $pwfile,
		'tenant_cache.max_retry_interval_ms' => $max_retry_ms,
		'tenant_cache.poll_interval_ms' => 500,
		'log_min_messages' => 'debug1',
	});
$node->start;

sub worker_connected
{
	return scalar grep { /user=tc_worker/ } $redis->cmd('CLIENT', 'LIST');
}

sub log_contains
{
	my ($re) = @_;
	return slurp_file($node->logfile) =~ $re;
}

# The worker talks to Redis once the extension exists.
$node->safe_psql('postgres', 'CREATE EXTENSION tenant_cache');

# 1. A password file readable by others is refused, with a clear message.
ok( defined wait_until(
		sub { log_contains(qr/has group or world access; it must be u=rw \(0600\) or less/) },
		10),
	'a password file with group/world access is refused');
ok(!worker_connected(), 'the worker did not authenticate with it');
write_password($password, 0600);
ok(defined wait_until(\&worker_connected, $max_retry_ms / 1000 + 5),
	'with mode 0600 the worker authenticates as the ACL user');

# 2. Hostile search_path for the database (so the worker) and a login role.
$node->safe_psql(
	'postgres', q{
CREATE SCHEMA trojan;
CREATE FUNCTION trojan.int8_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE WARNING 'TROJAN int8 ='; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR trojan.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = trojan.int8_eq);
CREATE FUNCTION trojan.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE WARNING 'TROJAN text ='; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR trojan.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trojan.text_eq);
CREATE FUNCTION trojan.ts_le(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE WARNING 'TROJAN <='; RETURN $1 OPERATOR(pg_catalog.<=) $2; END $$;
CREATE OPERATOR trojan.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = trojan.ts_le);
CREATE FUNCTION trojan.int4_pl(integer, integer) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN RAISE WARNING 'TROJAN +'; RETURN $1 OPERATOR(pg_catalog.+) $2; END $$;
CREATE OPERATOR trojan.+ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = trojan.int4_pl);
CREATE FUNCTION trojan.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN RAISE WARNING 'TROJAN clock_timestamp'; RETURN now(); END $$;
CREATE FUNCTION trojan.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS
  $$ BEGIN RAISE WARNING 'TROJAN unnest'; RETURN QUERY SELECT 'x'; END $$;
CREATE TABLE trojan.pending (id bigint, glob text, enqueued_at timestamptz, attempts int,
                             last_error text, next_attempt_at timestamptz);
CREATE TABLE trojan.dependency (model text, pattern text, scope text);
GRANT USAGE ON SCHEMA trojan TO PUBLIC;
GRANT ALL ON ALL TABLES IN SCHEMA trojan TO PUBLIC;
ALTER DATABASE postgres SET search_path = trojan, pg_catalog, public;
CREATE ROLE writer LOGIN;
ALTER ROLE writer SET search_path = trojan, pg_catalog, public;
CREATE TABLE public.t (id serial, tenant_id text, client_id text, bu_id text);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO writer;
GRANT USAGE ON SEQUENCE public.t_id_seq TO writer;
});
# From here on the test's own sessions (queue counts, pg_stat_activity
# look-ups) use a clean search_path; the writer, the worker and the
# administration calls below get the hostile one.
$ENV{PGOPTIONS} = '-c search_path=pg_catalog,public';

# The worker picks up the database's search_path when it connects: restart it.
my $old_pid = worker_pid($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)");
ok( defined wait_until(
		sub { my $p = worker_pid($node); defined $p && $p != $old_pid }, 15),
	'worker restarted under the hostile database search_path');
{
	local $ENV{PGOPTIONS} = '';
	like((writer_sql('SELECT 1'))[1], qr/^trojan, pg_catalog, public/,
		'the writer\'s sessions get the hostile search_path');
}
ok(defined wait_until(\&worker_connected, $max_retry_ms / 1000 + 5),
	'restarted worker authenticated again');

# Administration under the hostile search_path (new sessions get it).
$node->safe_psql(
	'postgres', q{
SET search_path = trojan, pg_catalog, public;
SELECT tenant_cache.register_dependency('Sec', ARRAY['dash'], 'tenant');
SELECT tenant_cache.watch_table('public.t', 'Sec', 'tenant_id', 'client_id', 'bu_id');
});

sub writer_sql
{
	my ($sql) = @_;
	local $ENV{PGOPTIONS} = '';
	return $node->psql('postgres', "SHOW search_path; $sql",
		extra_params => [ '-U', 'writer' ]);
}

sub hex_of { return unpack('H*', $_[0]); }

sub tenant_keys
{
	my ($v) = @_;
	return ("tenant:$v:client:c1:bu:b1:dash:1", "tenant:$v:client:c2:bu:b2:dash:2");
}

# 3. Glob injection: each hostile tenant id clears its own keys, nothing else.
my @hostile = (
	'a*', 'abc', 'a?c', 'a[b]c', 'a\\', 'a]', '[', '^', '-', 'a b c', ' ',
	"cr\rlf\n", "tab\there", '%s%n%d', '*', '?', '\\*', '[a-z]', '[^x]',
	'a\\[', 'ab*c?d[e]f\\', join('', map { chr } 1 .. 9, 11 .. 31, 127),
	'x' x 10240, 'é中文', '');
my @decoys = ('a', 'ab', 'aXc', 'abc2', 'b', 'x' x 10239, 'cr');
my @tenants = (@hostile, @decoys);
my %all = map { $_ => 1 } map { tenant_keys($_) } @tenants;
$all{'session:abc'} = 1;
$all{'other:tenant:a*:x'} = 1;

my ($tried, $cross_clears, $missed) = (0, 0, 0);
foreach my $v (@hostile)
{
	$redis->flushall;
	$redis->set_keys({ map { $_ => 'cached' } keys %all });
	my $before = $redis->dbsize;
	my @own = tenant_keys($v);

	my ($rc, $out, $err) = writer_sql(
		"INSERT INTO public.t (tenant_id, client_id, bu_id) VALUES "
		  . "(convert_from(decode('" . hex_of($v) . "', 'hex'), 'UTF8'), 'c9', 'b9')");
	is($rc, 0, sprintf('write by tenant %s succeeds', hex_of(substr($v, 0, 16))))
	  or diag $err;
	$tried++;
	my $gone = wait_until(sub { $redis->count_existing(@own) == 0 }, 5);
	$missed++ unless defined $gone;
	# Wait until the queue is empty, so no later clear can be missed.
	wait_until(sub { queue_count($node) == 0 }, 5);
	my $left = $redis->dbsize;
	my $others_cleared = ($before - $left) - scalar(@own);
	$cross_clears += $others_cleared if $others_cleared > 0;
	is($left, $before - scalar(@own),
		sprintf('tenant %s: exactly its %d keys cleared (%d -> %d)',
			hex_of(substr($v, 0, 16)), scalar(@own), $before, $left));
}
is($missed, 0, 'every hostile tenant\'s own keys were cleared');
is($cross_clears, 0, 'no key of another tenant was cleared');

# A tenant id containing the key_format separator is refused with the write.
$redis->flushall;
$redis->set_keys({ map { $_ => 'cached' } keys %all });
my $before = $redis->dbsize;
my ($rc, $out, $err) = writer_sql(
	"INSERT INTO public.t (tenant_id, client_id, bu_id) VALUES ('a:client:c1', 'c1', 'b1')");
isnt($rc, 0, 'a tenant id containing the separator is refused');
like($err, qr/contains ":", the separator that follows \{tenant\}/,
	'... with a message naming the separator');
$tried++;
$node->safe_psql('postgres', 'SELECT pg_sleep(0.6)');
is($redis->dbsize, $before, '... and clears nothing');
diag("hostile inputs tried: $tried, cross-tenant clears: $cross_clears");

# 4. NOPERM on one tenant's keys: its entry stays with the reason, the other
# tenant's invalidations are applied promptly.
$redis->cmd('ACL', 'SETUSER', 'tc_worker', 'resetkeys', '~tenant:1:*');
$redis->flushall;
$redis->set_keys('tenant:1:client:c:bu:b:dash:x', 'tenant:2:client:c:bu:b:dash:x');
($rc, $out, $err) = writer_sql(
	"INSERT INTO public.t (tenant_id, client_id, bu_id) VALUES ('2', 'c', 'b')");
is($rc, 0, 'tenant 2 writes');
ok( defined wait_until(
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM tenant_cache.queue WHERE last_error LIKE '%NOPERM%' AND attempts >= 1"
			) == 1;
		},
		10),
	'tenant 2\'s entry is kept with NOPERM in last_error');
($rc, $out, $err) = writer_sql(
	"INSERT INTO public.t (tenant_id, client_id, bu_id) VALUES ('1', 'c', 'b')");
my $t1 = wait_until(sub { !$redis->exists('tenant:1:client:c:bu:b:dash:x') }, 5);
ok(defined $t1, 'tenant 1\'s keys are still cleared promptly');
note sprintf('tenant 1 cleared %.3f s after its commit while tenant 2 fails', $t1 // -1);
ok($redis->exists('tenant:2:client:c:bu:b:dash:x'), 'tenant 2\'s key is still there');
$redis->cmd('ACL', 'SETUSER', 'tc_worker', 'resetkeys', '~tenant:*');
ok( defined wait_until(
		sub { !$redis->exists('tenant:2:client:c:bu:b:dash:x') && queue_count($node) == 0 },
		$max_retry_ms / 1000 + 5),
	'once allowed, tenant 2\'s entry is applied and the queue is empty');

# 5. A wrong password: AUTH fails, the worker backs off, warns once.
write_password($wrong_password, 0600);
my $log_offset = -s $node->logfile;
$redis->cmd('CLIENT', 'KILL', 'USER', 'tc_worker');
$redis->set_keys('tenant:3:client:c:bu:b:dash:x');
writer_sql("INSERT INTO public.t (tenant_id, client_id, bu_id) VALUES ('3', 'c', 'b')");
ok( defined wait_until(
		sub { slurp_file($node->logfile, $log_offset) =~ /Redis AUTH failed: WRONGPASS/ }, 10),
	'a wrong password is reported as an AUTH failure');
$node->safe_psql('postgres', 'SELECT pg_sleep(3)');
my $log = slurp_file($node->logfile, $log_offset);
my $warnings = () = $log =~ /WARNING:  tenant_cache worker/g;
my $attempts = () = $log =~ /Redis AUTH failed/g;
cmp_ok($attempts, '>=', 3, "the worker kept retrying ($attempts attempts in 3 s)");
cmp_ok($attempts, '<=', 12, '... with backoff, not in a loop');
cmp_ok($warnings, '<=', 2, "... and warned $warnings time(s), not at every attempt");
ok($redis->exists('tenant:3:client:c:bu:b:dash:x'), 'the invalidation waits meanwhile');
write_password($password, 0600);
ok(defined wait_until(sub { !$redis->exists('tenant:3:client:c:bu:b:dash:x') },
		$max_retry_ms / 1000 + 5),
	'with the right password again, the waiting invalidation is applied');

# 6. The password is nowhere to be seen; no trojan ran.
$log = slurp_file($node->logfile);
unlike($log, qr/\Q$password\E/, 'the password is not in the server log');
unlike($log, qr/\Q$wrong_password\E/, 'nor the wrong one');
unlike($log, qr/WARNING:  TROJAN/, 'no trojan object was called, by the worker or the writer');
my $visible = $node->safe_psql(
	'postgres', q{
SELECT string_agg(x, ' ') FROM (
  SELECT coalesce(setting, '') || coalesce(reset_val, '') || coalesce(boot_val, '') AS x FROM pg_settings
  UNION ALL SELECT coalesce(query, '') || coalesce(application_name, '') FROM pg_stat_activity
  UNION ALL SELECT coalesce(last_error, '') FROM tenant_cache.queue) s});
unlike($visible, qr/\Q$password\E/, 'nor in pg_settings, pg_stat_activity or the queue');
is($node->safe_psql('postgres', 'SELECT count(*) FROM trojan.pending'),
	'0', 'the trojan queue table received nothing');

$node->stop;
$redis->stop;
done_testing();
