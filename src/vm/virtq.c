/*
 * The device side of a split virtqueue, in the VM enclave's vsock back-end. The guest writes the
 * rings while we read them: each field is read once into a local, then checked (an index against
 * the queue size, an address and length against the memory map), so that what is checked is what
 * is used.
 */
#include "vm/virtq.h"

#include <endian.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define DESC_F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1

static uint8_t *lookup(const struct guest_mem *m, uint64_t addr, uint64_t len, bool by_gpa)
{
	for (size_t i = 0; i < m->n; i++) {
		const struct guest_region *r = &m->r[i];
		uint64_t base = by_gpa ? r->gpa : r->uaddr;

		/* written so that no sum can wrap: addr - base < size, len <= size - (addr - base) */
		if (addr >= base && addr - base < r->size && len <= r->size - (addr - base))
			return r->host + (addr - base);
	}
	return NULL;
}

uint8_t *guest_gpa(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	return lookup(m, gpa, len, true);
}

uint8_t *guest_uaddr(const struct guest_mem *m, uint64_t uaddr, uint64_t len)
{
	return lookup(m, uaddr, len, false);
}

void guest_mem_unmap(struct guest_mem *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->r[i].map)
			munmap(m->r[i].map, m->r[i].map_len);
	m->n = 0;
}

void virtq_init(struct virtq *q)
{
	memset(q, 0, sizeof(*q));
	q->kick_fd = q->call_fd = -1;
}

bool virtq_map(struct virtq *q, const struct guest_mem *m)
{
	uint64_t n = q->num;

	q->desc = q->avail = q->used = NULL;
	if (!n)
		return false;
	q->desc = guest_uaddr(m, q->desc_ua, 16 * n);
	q->avail = guest_uaddr(m, q->avail_ua, 4 + 2 * n + 2);
	q->used = guest_uaddr(m, q->used_ua, 4 + 8 * n + 2);
	/* the alignments VIRTIO requires, which our atomic accesses rely on */
	if (!q->desc || !q->avail || !q->used || (uintptr_t)q->desc % 16 || (uintptr_t)q->avail % 2 ||
	    (uintptr_t)q->used % 4) {
		q->desc = q->avail = q->used = NULL;
		q->broken = true;
		return false;
	}
	return true;
}

bool virtq_ready(const struct virtq *q)
{
	return q->enabled && !q->broken && q->desc;
}

static uint16_t load16(const uint8_t *p, int order)
{
	return le16toh(__atomic_load_n((const uint16_t *)p, order));
}

int virtq_pop(struct virtq *q, const struct guest_mem *m, struct virtq_chain *c)
{
	uint16_t avail_idx, pending, idx;

	if (!virtq_ready(q))
		return q->broken ? -1 : 0;
	/* acquire: the entries and descriptors the index covers are read after it */
	avail_idx = load16(q->avail + 2, __ATOMIC_ACQUIRE);
	pending = (uint16_t)(avail_idx - q->last_avail);
	if (!pending)
		return 0;
	if (pending > q->num)
		goto broken;
	idx = load16(q->avail + 4 + 2 * (q->last_avail & (q->num - 1)), __ATOMIC_RELAXED);
	c->head = idx;
	c->n_rd = c->n_wr = 0;
	c->rd_len = c->wr_len = 0;
	for (unsigned steps = 0;; steps++) {
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;
		uint8_t d[16];

		/* a chain longer than the table loops */
		if (idx >= q->num || steps >= q->num)
			goto broken;
		memcpy(d, q->desc + 16 * (size_t)idx, sizeof(d));
		memcpy(&addr, d, 8);
		memcpy(&len, d + 8, 4);
		memcpy(&flags, d + 12, 2);
		memcpy(&next, d + 14, 2);
		addr = le64toh(addr);
		len = le32toh(len);
		flags = le16toh(flags);
		next = le16toh(next);
		if (flags & DESC_F_INDIRECT) /* not offered */
			goto broken;
		if (len) {
			uint8_t *p = guest_gpa(m, addr, len);
			struct virtq_seg *seg;

			if (!p)
				goto broken;
			if (flags & DESC_F_WRITE) {
				if (c->n_wr == VIRTQ_MAX_SEGS)
					goto broken;
				seg = &c->wr[c->n_wr++];
				c->wr_len += len;
			} else {
				if (c->n_rd == VIRTQ_MAX_SEGS)
					goto broken;
				seg = &c->rd[c->n_rd++];
				c->rd_len += len;
			}
			seg->p = p;
			seg->len = len;
		}
		if (!(flags & DESC_F_NEXT))
			break;
		idx = next;
	}
	q->last_avail++;
	return 1;
broken:
	q->broken = true;
	return -1;
}

void virtq_kicks_off(struct virtq *q)
{
	if (virtq_ready(q))
		__atomic_store_n((uint16_t *)q->used, htole16(USED_F_NO_NOTIFY), __ATOMIC_RELAXED);
}

bool virtq_kicks_on(struct virtq *q)
{
	if (!virtq_ready(q))
		return false;
	__atomic_store_n((uint16_t *)q->used, 0, __ATOMIC_RELAXED);
	/* the flag is published before the index is read again: a chain the driver made available
	 * while it saw the flag set is found here, and any later one comes with a kick */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load16(q->avail + 2, __ATOMIC_ACQUIRE) != q->last_avail;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail--;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
	uint8_t *e;
	uint32_t id = htole32(head), l = htole32(len);

	if (!virtq_ready(q))
		return;
	e = q->used + 4 + 8 * (size_t)(q->used_idx & (q->num - 1));
	memcpy(e, &id, 4);
	memcpy(e + 4, &l, 4);
	q->used_idx++;
	/* release: the entry is visible before the index that covers it */
	__atomic_store_n((uint16_t *)(q->used + 2), htole16(q->used_idx), __ATOMIC_RELEASE);
}

void virtq_notify(struct virtq *q)
{
	uint64_t one = 1;

	if (!virtq_ready(q) || q->call_fd < 0)
		return;
	/* the used index is published before the driver's flag is read (VIRTIO 2.7.7.2) */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (load16(q->avail, __ATOMIC_RELAXED) & AVAIL_F_NO_INTERRUPT)
		return;
	if (write(q->call_fd, &one, sizeof(one)) < 0) {
		/* a full counter already wakes the driver */
	}
}

/* Copies between segments (from byte off of them) and flat memory, either way. */
static size_t copy_segs(const struct virtq_seg *s, unsigned n, size_t off, uint8_t *flat, size_t len, bool to_segs)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t take;

		if (off >= s[i].len) {
			off -= s[i].len;
			continue;
		}
		take = s[i].len - off < len - done ? s[i].len - off : len - done;
		if (to_segs)
			memcpy(s[i].p + off, flat + done, take);
		else
			memcpy(flat + done, s[i].p + off, take);
		done += take;
		off = 0;
	}
	return done;
}

size_t virtq_gather(const struct virtq_seg *s, unsigned n, size_t off, void *dst, size_t len)
{
	return copy_segs(s, n, off, dst, len, false);
}

size_t virtq_scatter(const struct virtq_seg *s, unsigned n, size_t off, const void *src, size_t len)
{
	return copy_segs(s, n, off, (uint8_t *)(uintptr_t)src, len, true);
}

int virtq_iovec(const struct virtq_seg *s, unsigned n, size_t off, size_t max, struct iovec *iov)
{
	int k = 0;

	for (unsigned i = 0; i < n && max; i++) {
		size_t take;

		if (off >= s[i].len) {
			off -= s[i].len;
			continue;
		}
		take = s[i].len - off < max ? s[i].len - off : max;
		iov[k].iov_base = s[i].p + off;
		iov[k++].iov_len = take;
		max -= take;
		off = 0;
	}
	return k;
}
