/* rq_worker_impl.h - the state of `sdrt worker` (rq_worker.h) shared by its
 * files: rq_worker.c (start, stop, the puller), rq_worker_out.c (the
 * hooks' outbox and the publisher), rq_worker_monitor.c (heartbeats,
 * flags, presence, trimming). Locking: w->mu guards the slots, the outbox
 * and the counters; it is taken after s->mu, never before it. */
#ifndef SDRT_RQ_WORKER_IMPL_H
#define SDRT_RQ_WORKER_IMPL_H

#include "rq.h"
#include "rq_worker.h"
#include "srv.h"

#define RQW_SLOTS (SD_SERVER_MAX_DEVICES * 2)
#define RQW_BLOCK_MS 1000
#define RQW_TICK_MS 200
#define RQW_ALIVE_TTL_S 15
#define RQW_TRIM_EVERY_S 60
#define RQW_TRIM_KEEP_MS (10 * 60 * 1000) /* acknowledged entries stay 10 minutes (for inspection) */

/* An entry this worker holds, with its local job (a reference). */
struct slot {
    int used;
    unsigned gen;
    struct sd_rq_entry e;
    struct job *j;
    double last_beat;
};

enum { IT_EVENT, IT_SET, IT_FINISH };
struct item {
    struct item *next;
    int kind;
    char id[128];
    char *event, *data;           /* IT_EVENT; IT_FINISH: the final event */
    char *kv[10];                 /* IT_SET: field, value pairs */
    int n_kv, n_str;              /* pairs; strings held */
    int slot;                     /* IT_FINISH */
    unsigned gen;
    enum job_state state;
};

struct sd_rq_worker {
    struct sd_rq_worker_opts o;
    char url[1024], prefix[128], name[128];
    struct srv *s;
    struct sd_rq *q_pull, *q_mon, *q_pub;
    pthread_t th[3];
    int started[3];
    pthread_mutex_t mu;           /* slots, outbox, counters; taken after s->mu, never before it */
    pthread_cond_t cv;
    struct slot slots[RQW_SLOTS];
    int n_used;
    struct item *out_head, *out_tail;
    volatile int draining, aborting, quit, stop_io;
    volatile int pull_stop;       /* the puller's connection gives up reconnecting (draining or aborting) */
    struct sd_rq_worker_counts c;
    const char *models[SRV_MAX_MODELS];
    int n_models;
    long long t_start_ms;
};

long long rqw_now_ms(void);
void rqw_sleep_ms(int ms);
void rqw_cv_wait_ms(struct sd_rq_worker *w, int ms); /* under w->mu */
/* The srv hooks (srv.h): a held job's events and end become outbox items. */
void rqw_hook_event(void *user, struct srv *s, struct job *j, const char *event, const char *data);
void rqw_hook_finish(void *user, struct srv *s, struct job *j);
void rqw_item_free(struct item *it);
void *rqw_publisher(void *w);
void *rqw_monitor(void *w);

#endif
