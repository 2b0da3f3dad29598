/* ferry-export — the threads that read the sources (pool.h). */
#include <errno.h>
#include <stdlib.h>

#include <event2/event.h>

#include "common/log.h"
#include "tools/export/pool.h"

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_job *j = arg;
	struct event *ev = j->ev;

	(void)fd;
	(void)what;
	j->done(j);	/* may free @j */
	event_free(ev);
}

static void *
pool_main(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct pool_job *j;

		while (!p->stop && !p->head)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		j = p->head;
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		j->work(j);
		/* Thread-safe (evthread_use_pthreads): the loop runs done. */
		event_active(j->ev, EV_TIMEOUT, 0);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int
pool_start(struct pool *p, unsigned n)
{
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->head = p->tail = NULL;
	p->stop = false;
	p->n = 0;
	if (n < 1 || n > sizeof p->tid / sizeof p->tid[0])
		return -EINVAL;
	for (; p->n < n; p->n++)
		if (pthread_create(&p->tid[p->n], NULL, pool_main, p) != 0) {
			ferry_error("cannot start the source threads");
			pool_stop(p);
			return -EAGAIN;
		}
	return 0;
}

int
pool_submit(struct pool *p, struct event_base *base, struct pool_job *j)
{
	j->ev = event_new(base, -1, 0, done_cb, j);
	if (!j->ev)
		return -ENOMEM;
	j->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->stop) {
		pthread_mutex_unlock(&p->lock);
		event_free(j->ev);
		return -ESHUTDOWN;
	}
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void
pool_stop(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->tid[i], NULL);
	p->n = 0;
}
