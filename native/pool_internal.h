/* Thread pool internals shared by threadpool.c and model.c. */
#ifndef DITTO_POOL_INTERNAL_H
#define DITTO_POOL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ditto.h"

struct worker_arg;

struct dt_pool {
    int n_threads;                 /* including the caller (thread 0) */
    int n_started;                 /* workers created: threads[1..n_started] */
    pthread_t *threads;            /* (n_threads) */
    struct worker_arg *args;       /* (n_threads) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Own cache lines: idle workers spin reading `generation` while the
     * running threads claim tasks from `job`. */
    _Alignas(64) _Atomic uint64_t generation; /* bumped once per dt_pool_run, wakes workers */
    _Alignas(64) _Atomic uint64_t job;        /* packed (generation, n_tasks, next task): see threadpool.c */
    _Atomic int64_t n_done;                   /* tasks of the current run completed */
    char pad_[64 - sizeof(uint64_t) - sizeof(int64_t)];
    _Atomic int stop;
    dt_task_fn fn;
    void *arg;
    int64_t task_base;             /* first task number of the current job */
    float **scratch;               /* (n_threads) private buffers of scratch_floats */
    int64_t scratch_floats;
    void *tokens;                  /* shared, 64-aligned: a dispatch's prepared activations */
    int64_t tokens_bytes;
};

/* Grows every thread's scratch to at least `floats` floats. */
int dt_pool_reserve_scratch(dt_pool *pool, int64_t floats);
/* The pool's buffer for one dispatch's prepared activations, grown to at
 * least `bytes` and kept: freeing it after every matmul made each prefill
 * fault its pages in again (glibc maps big blocks fresh each time). Valid
 * until the next call; NULL if out of memory. */
void *dt_pool_token_buffer(dt_pool *pool, int64_t bytes);

#endif
