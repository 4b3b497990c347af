/*
 * test_raft_sim.c — randomized schedules over 3- and 5-node Raft clusters.
 *
 * Each schedule is a seed. It picks network and disk behaviour, then for a few
 * simulated seconds interleaves client proposals and reads with crashes,
 * restarts, partitions, lossy and duplicating links and snapshots, while the
 * fixture checks the Raft safety properties after every event. At the end the
 * network heals and every node restarts: a leader must be elected, commit a
 * new proposal and every node must apply it and every acknowledged proposal
 * within a bounded simulated time.
 *
 *   KVFS_RAFT_SEED=S       first seed (default 1); with it alone, one schedule
 *   KVFS_RAFT_SCHEDULES=N  schedules per cluster size (default 2000)
 *   KVFS_RAFT_TRACE=1      print every event (use with one seed)
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "cluster/raft.h"
#include "tests/lib/raft_sim.h"

#define SIM_MS     3000u  /* simulated time of the faulty phase */
#define HEAL_MS    5000u  /* liveness bound after healing */

static uint64_t drv(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct totals {
	uint64_t schedules, events, acked, reads, snapshots, sim_ms, heal_max, heal_sum;
};

/* Runs one schedule; 0 or -1 with the reason in rsim_error. */
static int run_schedule(unsigned n, uint64_t seed, struct totals *tot, char *why, size_t whylen)
{
	uint64_t x = seed * 0x2545f4914f6cdd1dull + n;
	struct rsim_opts o = { .n = n, .seed = seed };
	rsim *s;
	uint64_t end, rid;
	int rc = 0;
	uint32_t i;

	o.election_ms = 100;
	o.heartbeat_ms = 10 + (unsigned)(drv(&x) % 20);
	o.net_min_ms = 1;
	o.net_max_ms = 2 + (unsigned)(drv(&x) % 40);
	o.drop_pct = (unsigned)(drv(&x) % 4 == 0 ? 0 : drv(&x) % 20);
	o.dup_pct = (unsigned)(drv(&x) % 10);
	o.disk_min_ms = 1;
	o.disk_max_ms = 1 + (unsigned)(drv(&x) % 30);
	o.snapshot_every = drv(&x) % 3 == 0 ? 0 : 3 + (unsigned)(drv(&x) % 30);
	o.trailing = (unsigned)(drv(&x) % 5);
	o.max_append_entries = 1 + (unsigned)(drv(&x) % 16);
	o.defer_sends = (int)(drv(&x) % 2);
	o.max_snapshot_chunk = drv(&x) % 2 ? 0 : 1 + (size_t)(drv(&x) % 12);
	if (rsim_new(&o, &s)) {
		snprintf(why, whylen, "rsim_new failed");
		return -1;
	}
	end = rsim_now(s) + SIM_MS;
	while (rsim_now(s) < end) {
		unsigned a = (unsigned)(drv(&x) % 1000);
		uint32_t id = 1 + (uint32_t)(drv(&x) % n);

		if (rsim_run_for(s, 1 + drv(&x) % 25)) {
			rc = -1;
			break;
		}
		if (a < 400) {
			/* Clients write through whoever they believe leads. */
			uint32_t l = rsim_leader(s), k = 1 + (uint32_t)(drv(&x) % 4);

			for (i = 0; i < k; i++)
				if (rsim_propose(s, drv(&x) % 4 ? (l ? l : id) : id, NULL) == -1 &&
				    strcmp(rsim_error(s), "no error")) {
					rc = -1;
					break;
				}
		} else if (a < 500) {
			if (rsim_read(s, id, &rid) == -1 && strcmp(rsim_error(s), "no error"))
				rc = -1;
			tot->reads++;
		} else if (a < 530) {
			rsim_crash(s, id);
		} else if (a < 580) {
			if (rsim_restart(s, id))
				rc = -1;
		} else if (a < 610) {
			rsim_partition(s, (uint32_t)(drv(&x) % (1u << (n + 1))) & ~1u);
		} else if (a < 640) {
			rsim_isolate(s, id);
		} else if (a < 700) {
			rsim_heal(s);
		} else if (a < 720) {
			rsim_set_net(s, (unsigned)(drv(&x) % 30), (unsigned)(drv(&x) % 10));
		} else if (a < 740) {
			if (rsim_snapshot(s, id) == -1)
				rc = -1;
		} else if (a < 742) {
			/* One disk becomes slow (or normal again). */
			unsigned hi = drv(&x) % 2 ? 0 : 20 + (unsigned)(drv(&x) % 200);

			rsim_set_disk(s, id, hi ? hi / 2 : 0, hi);
		} else if (a < 745) {
			uint32_t l = rsim_leader(s);

			if (l && rsim_transfer(s, l, id) == -1 && strcmp(rsim_error(s), "no error"))
				rc = -1;
		} else if (a < 750) {
			/* Power failure: several nodes at once (possibly all)
			 * lose their unsynced writes, and come back together. */
			uint32_t mask = (uint32_t)drv(&x);

			for (i = 1; i <= n; i++)
				if (mask & (1u << i))
					rsim_crash(s, i);
			if (rsim_run_for(s, drv(&x) % 50))
				rc = -1;
			for (i = 1; i <= n && !rc; i++)
				if (rsim_restart(s, i))
					rc = -1;
		}
		if (rc)
			break;
	}
	if (!rc)
		rc = rsim_check_liveness(s, HEAL_MS);
	if (rc) {
		snprintf(why, whylen, "%s", rsim_error(s));
		rsim_dump(s, stderr);
	}
	tot->schedules++;
	tot->events += rsim_events(s);
	tot->acked += rsim_acked_count(s);
	tot->snapshots += rsim_delivered(s, RAFT_MSG_SNAPSHOT);
	tot->sim_ms += rsim_now(s) - 1000;
	if (!rc) {
		if (getenv("KVFS_RAFT_SLOW_HEAL") && rsim_heal_ms(s) > strtoull(getenv("KVFS_RAFT_SLOW_HEAL"), NULL, 0))
			printf("slow heal: %u nodes seed %" PRIu64 ": %" PRIu64 " ms\n", n, seed, rsim_heal_ms(s));
		tot->heal_sum += rsim_heal_ms(s);
		if (rsim_heal_ms(s) > tot->heal_max)
			tot->heal_max = rsim_heal_ms(s);
	}
	rsim_free(s);
	return rc;
}

static void run_many(unsigned n)
{
	const char *es = getenv("KVFS_RAFT_SEED"), *en = getenv("KVFS_RAFT_SCHEDULES");
	uint64_t first = es ? strtoull(es, NULL, 0) : 1;
	uint64_t count = en ? strtoull(en, NULL, 0) : es ? 1 : 2000;
	struct totals tot = { 0 };
	struct timespec t0, t1;
	char why[600];
	uint64_t k;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (k = 0; k < count; k++) {
		uint64_t seed = first + k;

		if (run_schedule(n, seed, &tot, why, sizeof(why))) {
			fail_msg("%u nodes, schedule failed: %s\n"
				 "reproduce: KVFS_RAFT_SEED=%" PRIu64 " KVFS_RAFT_TRACE=1 %s",
				 n, why, seed, "tests/test_raft_sim");
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("raft_sim: %u nodes: %" PRIu64 " schedules (seeds %" PRIu64 "..%" PRIu64
	       "), %" PRIu64 " events, %" PRIu64 " acknowledged proposals, %" PRIu64
	       " reads, %" PRIu64 " snapshots sent, %.1f simulated s, %.2f s wall;"
	       " after healing, all caught up in %.0f ms on average, %" PRIu64 " ms at most"
	       " (election timeout 100 ms)\n",
	       n, tot.schedules, first, first + count - 1, tot.events, tot.acked, tot.reads,
	       tot.snapshots, (double)tot.sim_ms / 1000.0,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	       tot.schedules ? (double)tot.heal_sum / (double)tot.schedules : 0.0, tot.heal_max);
}

static void random_schedules_on_three_nodes_keep_raft_safe_and_live(void **state)
{
	(void)state;
	run_many(3);
}

static void random_schedules_on_five_nodes_keep_raft_safe_and_live(void **state)
{
	(void)state;
	run_many(5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(random_schedules_on_three_nodes_keep_raft_safe_and_live),
		cmocka_unit_test(random_schedules_on_five_nodes_keep_raft_safe_and_live),
	};

	return cmocka_run_group_tests_name("raft_sim", tests, NULL, NULL);
}
