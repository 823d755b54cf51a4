# tenant_cache: PGXS build, pg_regress and TAP tests.
EXTENSION = tenant_cache
MODULE_big = tenant_cache
OBJS = src/tenant_cache.o src/glob.o src/globmatch.o src/globset.o \
	src/depcache.o src/queue.o src/absorb.o src/trigger.o src/when.o src/sqlfuncs.o \
	src/redis.o src/apply.o src/worker.o src/stats.o src/toolbox.o \
	src/publish.o src/twins.o
DATA = sql/tenant_cache--1.0.sql sql/tenant_cache--1.1.sql \
	sql/tenant_cache--1.0--1.1.sql sql/tenant_cache--1.2.sql \
	sql/tenant_cache--1.1--1.2.sql
PGFILEDESC = "tenant_cache - Redis cache invalidation from table writes"

PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -lhiredis

REGRESS = setup api triggers transactions privileges placeholders toolbox upgrade
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf --temp-instance=./tmp_check

# The tests' servers run with glibc filling freed memory: a statement that
# used memory tenant_cache had freed would fail them, not pass by luck.
installcheck: export MALLOC_PERTURB_ = 165

TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
