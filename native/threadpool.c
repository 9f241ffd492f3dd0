/* A small persistent thread pool.
 *
 * A forward pass dispatches a few hundred parallel loops, microseconds
 * apart, so workers spin briefly on a generation counter before sleeping on
 * a condition variable: a wake-up through the kernel on every loop would
 * cost more than the loop.
 *
 * Tasks are claimed with a CAS on one packed word (generation, n_tasks,
 * next task), so a worker that wakes late, or was descheduled, can never
 * claim a task of a job that has moved on; the caller takes tasks too and
 * waits only for claimed tasks to finish, never for idle workers to show
 * up (on a shared 2-core machine the other core is often busy). Which
 * thread runs a task never changes what the task computes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#include "ditto.h"
#include "pool_internal.h"

enum { SPIN_ROUNDS = 20000 };

/* job word: generation (24 bits) | n_tasks (20 bits) | next task (20 bits) */
#define JOB_BITS 20
#define JOB_MASK ((UINT64_C(1) << JOB_BITS) - 1)
#define MAX_TASKS ((int64_t)JOB_MASK)
#define GEN_MASK ((UINT64_C(1) << (64 - 2 * JOB_BITS)) - 1)
static inline uint64_t job_pack(uint64_t gen, uint64_t n, uint64_t next) {
    return (gen << (2 * JOB_BITS)) | (n << JOB_BITS) | next;
}
static inline uint64_t job_gen(uint64_t w) { return w >> (2 * JOB_BITS); }
static inline uint64_t job_n(uint64_t w) { return (w >> JOB_BITS) & JOB_MASK; }
static inline uint64_t job_next(uint64_t w) { return w & JOB_MASK; }

struct worker_arg {
    dt_pool *pool;
    int id;
};

/* Claims and runs tasks of generation `gen` until none are left. A claim
 * takes a share of what is left (guided scheduling: big runs first, single
 * tasks at the end), so a loop of a thousand tasks costs a few dozen
 * transfers of the job word between cores instead of two per task. */
static void run_tasks(dt_pool *pool, uint64_t gen, int thread) {
    const uint64_t share = 2 * (uint64_t)pool->n_threads;
    uint64_t w = atomic_load_explicit(&pool->job, memory_order_acquire);
    for (;;) {
        if (job_gen(w) != gen || job_next(w) >= job_n(w)) return;
        uint64_t take = (job_n(w) - job_next(w)) / share;
        take = take ? take : 1;
        if (!atomic_compare_exchange_weak_explicit(&pool->job, &w, w + take, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        /* The claimed tasks keep this job open, so fn and arg are their own. */
        for (uint64_t i = 0; i < take; i++) pool->fn(pool->arg, pool->task_base + (int64_t)(job_next(w) + i), thread);
        atomic_fetch_add_explicit(&pool->n_done, (int64_t)take, memory_order_acq_rel);
        w = atomic_load_explicit(&pool->job, memory_order_acquire);
    }
}

static void *worker_main(void *p) {
    struct worker_arg *wa = p;
    dt_pool *pool = wa->pool;
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        for (int i = 0; gen == seen && i < SPIN_ROUNDS; i++) {
            cpu_relax();
            gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->mu);
            while ((gen = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop)) break;
        seen = gen;
        run_tasks(pool, gen & GEN_MASK, wa->id);
    }
    return NULL;
}

int dt_pool_new(int n_threads, dt_pool **out) {
    if (n_threads < 1 || n_threads > 1024 || !out) return DT_ERR_INVALID;
    dt_pool *pool = aligned_alloc(_Alignof(dt_pool), sizeof *pool); /* its atomics sit on their own lines */
    if (!pool) return DT_ERR_NOMEM;
    memset(pool, 0, sizeof *pool);
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->scratch = calloc((size_t)n_threads, sizeof *pool->scratch);
    pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
    pool->args = calloc((size_t)n_threads, sizeof *pool->args);
    if (!pool->scratch || !pool->threads || !pool->args) {
        dt_pool_free(pool);
        return DT_ERR_NOMEM;
    }
    for (int i = 1; i < n_threads; i++) {
        pool->args[i].pool = pool;
        pool->args[i].id = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, &pool->args[i]) != 0) {
            dt_pool_free(pool);
            return DT_ERR_NOMEM;
        }
        pool->n_started = i;
    }
    *out = pool;
    return DT_OK;
}

void dt_pool_free(dt_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i <= pool->n_started; i++) pthread_join(pool->threads[i], NULL);
    for (int i = 0; pool->scratch && i < pool->n_threads; i++) free(pool->scratch[i]);
    free(pool->scratch);
    free(pool->tokens);
    free(pool->threads);
    free(pool->args);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool);
}

int dt_pool_threads(const dt_pool *pool) { return pool->n_threads; }

void dt_pool_run(dt_pool *pool, dt_task_fn fn, void *arg, int64_t n_tasks) {
    if (n_tasks <= 0) return;
    if (pool->n_threads == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    /* Loops longer than the packed word can count run as several jobs. */
    for (int64_t base = 0; base < n_tasks; base += MAX_TASKS) {
        int64_t n = n_tasks - base < MAX_TASKS ? n_tasks - base : MAX_TASKS;
        pool->fn = fn;
        pool->arg = arg;
        pool->task_base = base;
        atomic_store_explicit(&pool->n_done, 0, memory_order_relaxed);
        uint64_t gen = atomic_load(&pool->generation) + 1;
        atomic_store_explicit(&pool->job, job_pack(gen & GEN_MASK, (uint64_t)n, 0), memory_order_release);
        pthread_mutex_lock(&pool->mu);
        atomic_store_explicit(&pool->generation, gen, memory_order_release);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
        run_tasks(pool, gen & GEN_MASK, 0);
        while (atomic_load_explicit(&pool->n_done, memory_order_acquire) < n) cpu_relax();
    }
}

int dt_pool_reserve_scratch(dt_pool *pool, int64_t floats) {
    if (floats <= pool->scratch_floats) return DT_OK;
    for (int i = 0; i < pool->n_threads; i++) {
        float *p = realloc(pool->scratch[i], (size_t)floats * sizeof(float));
        if (!p) return DT_ERR_NOMEM;
        pool->scratch[i] = p;
    }
    pool->scratch_floats = floats;
    return DT_OK;
}

void *dt_pool_token_buffer(dt_pool *pool, int64_t bytes) {
    if (bytes <= pool->tokens_bytes) return pool->tokens;
    const int64_t size = (bytes + 63) & ~(int64_t)63;
    void *p = aligned_alloc(64, (size_t)size);
    if (!p) return NULL;
    free(pool->tokens);
    pool->tokens = p;
    pool->tokens_bytes = size;
    return p;
}

/* The threaded matmul (dt_matmul, dt_matmul_p) lives in matmul.c. */
