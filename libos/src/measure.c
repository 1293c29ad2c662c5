/* Replay of the MRENCLAVE measurement from a signed file (../shared/research/sgx_sign.md 1,
 * 2.8, 2.9): ECREATE, then every page of every PT_LOAD segment of the patched image, then the
 * layout entries recorded in the metadata, exactly as the SDK loader would EADD/EEXTEND them. */
#include "sgxmeta.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define ATTR_EADD 0x1u
#define ATTR_EEXTEND 0x2u
#define GROUP_FLAG 0x1000u
#define SI_FLAG_TCS 0x100u
#define SI_FLAG_REG 0x200u

/* Records are gathered in a buffer and hashed in large updates: one EVP call per 64-byte
 * record costs more than the hashing itself. */
#define MEAS_BUF (256u * 1024u)

struct meas {
    EVP_MD_CTX *md;
    uint64_t pages, max_pages;
    struct ocb_err *e;
    uint8_t *buf;
    size_t len;
};

static int flush(struct meas *m)
{
    if (m->len && EVP_DigestUpdate(m->md, m->buf, m->len) != 1)
        return ocb_fail(m->e, "SHA-256 failed");
    m->len = 0;
    return 0;
}

static int put(struct meas *m, const void *data, size_t n)
{
    if (m->len + n > MEAS_BUF && flush(m) != 0)
        return -1;
    memcpy(m->buf + m->len, data, n);
    m->len += n;
    return 0;
}

static int rec(struct meas *m, const char tag[8], uint64_t offset, uint64_t flags)
{
    uint8_t r[64] = {0};
    memcpy(r, tag, 8);
    ocb_put_le64(r + 8, offset);
    ocb_put_le64(r + 16, flags);
    return put(m, r, 64);
}

/* EADD (+ 16 EEXTEND of `content` when extend). */
static int add_page(struct meas *m, uint64_t rva, uint64_t flags, const uint8_t *content, int extend)
{
    if (m->max_pages && ++m->pages > m->max_pages)
        return ocb_fail(m->e, "metadata layout too large to measure");
    if (rec(m, "EADD\0\0\0\0", rva, flags) != 0)
        return -1;
    if (!extend)
        return 0;
    for (unsigned off = 0; off < OCB_PAGE; off += 256) {
        if (rec(m, "EEXTEND\0", rva + off, 0) != 0 || put(m, content + off, 256) != 0)
            return -1;
    }
    return 0;
}

int ocb_patched_image(const struct ocb_enclave_file *f, uint8_t **image, struct ocb_err *e)
{
    uint8_t *img = malloc(f->size ? f->size : 1);
    if (img == NULL)
        return ocb_fail(e, "out of memory");
    memcpy(img, f->data, f->size);
    const struct ocb_metadata *md = &f->meta;
    const uint8_t *tab = md->raw + md->dir_offset[OCB_DIR_PATCH];
    for (uint32_t i = 0; i < md->dir_size[OCB_DIR_PATCH] / OCB_PE_STRUCT_SIZE; i++) {
        const uint8_t *pe = tab + OCB_PE_STRUCT_SIZE * i;
        uint64_t dst = ocb_le64(pe + OCB_PE_DST);
        uint32_t src = ocb_le32(pe + OCB_PE_SRC), size = ocb_le32(pe + OCB_PE_SIZE);
        if ((uint64_t)src + size > OCB_METADATA_SIZE || dst > f->size || size > f->size - dst) {
            free(img);
            return ocb_fail(e, "metadata patch entry %u out of bounds", i);
        }
        memcpy(img + dst, md->raw + src, size);
    }
    *image = img;
    return 0;
}

static uint64_t si_flags_of(uint32_t pflags)
{
    return SI_FLAG_REG | ((pflags & 4) ? 1 : 0) | ((pflags & 2) ? 2 : 0) | ((pflags & 1) ? 4 : 0);
}

static int measure_segments(struct meas *m, const struct ocb_enclave_file *f, const uint8_t *img)
{
    static uint8_t page[OCB_PAGE];
    for (size_t i = 0; i < f->nsegs; i++) {
        const struct ocb_segment *s = &f->segs[i];
        uint64_t flags = si_flags_of(s->flags);
        uint64_t start = s->vaddr & ~(uint64_t)(OCB_PAGE - 1);
        uint64_t fend = s->vaddr + s->filesz;
        uint64_t mend = (s->vaddr + s->memsz + OCB_PAGE - 1) & ~(uint64_t)(OCB_PAGE - 1);
        for (uint64_t p = start; p < mend; p += OCB_PAGE) {
            memset(page, 0, sizeof page);
            uint64_t lo = p > s->vaddr ? p : s->vaddr, hi = p + OCB_PAGE < fend ? p + OCB_PAGE : fend;
            if (lo < hi)
                memcpy(page + (lo - p), img + s->offset + (lo - s->vaddr), hi - lo);
            if (add_page(m, p, flags, page, 1) != 0)
                return -1;
        }
    }
    return 0;
}

struct entry {
    uint16_t id, attributes;
    uint32_t page_count, content_size, content_offset;
    uint64_t rva, si_flags;
};

static void read_entry(const uint8_t *p, struct entry *en)
{
    en->id = ocb_le16(p + OCB_LE_ID);
    en->attributes = ocb_le16(p + OCB_LE_ATTRIBUTES);
    en->page_count = ocb_le32(p + OCB_LE_PAGE_COUNT);
    en->rva = ocb_le64(p + OCB_LE_RVA);
    en->content_size = ocb_le32(p + OCB_LE_CONTENT_SIZE);
    en->content_offset = ocb_le32(p + OCB_LE_CONTENT_OFFSET);
    en->si_flags = ocb_le64(p + OCB_LE_SI_FLAGS);
}

static int measure_entry(struct meas *m, const struct ocb_metadata *md, const struct entry *en,
                         uint64_t delta)
{
    static uint8_t page[OCB_PAGE];
    if (!(en->attributes & ATTR_EADD))
        return 0;
    int extend = (en->attributes & ATTR_EEXTEND) != 0;
    if (en->content_offset != 0 &&
        ((uint64_t)en->content_offset + en->content_size > OCB_METADATA_SIZE || en->content_size > OCB_PAGE))
        return ocb_fail(m->e, "metadata layout entry content out of bounds");
    /* The content is the same for every page of an entry, except the TCS fix-ups. */
    int tcs = extend && en->content_offset != 0 && (en->si_flags & 0xff00) == SI_FLAG_TCS &&
              en->content_size >= 64;
    memset(page, 0, sizeof page);
    if (extend && en->content_offset != 0)
        memcpy(page, md->raw + en->content_offset, en->content_size);
    else if (extend && en->content_size != 0)
        for (unsigned k = 0; k < OCB_PAGE; k += 4)
            ocb_put_le32(page + k, en->content_size);
    for (uint32_t j = 0; j < en->page_count; j++) {
        uint64_t rva = en->rva + delta + (uint64_t)j * OCB_PAGE;
        if (tcs) {
            /* The loader relocates ossa, ofs_base and ogs_base by the TCS page's rva. */
            static uint8_t tpage[OCB_PAGE];
            static const unsigned fix[] = {16, 48, 56};
            memcpy(tpage, page, sizeof tpage);
            for (unsigned k = 0; k < 3; k++)
                ocb_put_le64(tpage + fix[k], ocb_le64(tpage + fix[k]) + rva);
            if (add_page(m, rva, en->si_flags, tpage, extend) != 0)
                return -1;
        } else if (add_page(m, rva, en->si_flags, page, extend) != 0) {
            return -1;
        }
    }
    return 0;
}

static int measure_layout(struct meas *m, const struct ocb_metadata *md)
{
    const uint8_t *tab = md->raw + md->dir_offset[OCB_DIR_LAYOUT];
    uint32_t n = md->dir_size[OCB_DIR_LAYOUT] / 32;
    for (uint32_t i = 0; i < n; i++) {
        uint16_t id = ocb_le16(tab + 32 * i);
        if (!(id & GROUP_FLAG)) {
            struct entry en;
            read_entry(tab + 32 * i, &en);
            if (measure_entry(m, md, &en, 0) != 0)
                return -1;
            continue;
        }
        const uint8_t *lg = tab + OCB_LG_STRUCT_SIZE * i;
        uint16_t count = ocb_le16(lg + OCB_LG_ENTRY_COUNT);
        uint32_t times = ocb_le32(lg + OCB_LG_LOAD_TIMES);
        uint64_t step = ocb_le64(lg + OCB_LG_LOAD_STEP);
        if (count == 0 || count > i)
            return ocb_fail(m->e, "metadata layout group %u refers outside the table", i);
        for (uint32_t t = 1; t <= times; t++) {
            for (uint32_t k = i - count; k < i; k++) {
                struct entry en;
                read_entry(tab + 32 * k, &en);
                if (en.id & GROUP_FLAG)
                    return ocb_fail(m->e, "metadata layout group %u contains a group", i);
                if (measure_entry(m, md, &en, step * t) != 0)
                    return -1;
            }
        }
    }
    return 0;
}

int ocb_measure(const struct ocb_enclave_file *f, uint64_t max_pages, uint8_t mrenclave[32],
                struct ocb_err *e)
{
    const struct ocb_metadata *md = &f->meta;
    if (md->dir_size[OCB_DIR_ELRANGE] != 0)
        return ocb_fail(e, "ELRANGE metadata is not supported");
    if (md->enclave_size == 0 || (md->enclave_size & (md->enclave_size - 1)) != 0)
        return ocb_fail(e, "metadata enclave size 0x%llx is not a power of two",
                        (unsigned long long)md->enclave_size);
    uint8_t *img = NULL;
    if (ocb_patched_image(f, &img, e) != 0)
        return -1;
    struct meas m = {EVP_MD_CTX_new(), 0, max_pages, e, malloc(MEAS_BUF), 0};
    int rc = -1;
    if (m.md == NULL || m.buf == NULL || EVP_DigestInit_ex(m.md, EVP_sha256(), NULL) != 1) {
        ocb_fail(e, "SHA-256 unavailable");
        goto out;
    }
    uint8_t r[64] = {0};
    memcpy(r, "ECREATE\0", 8);
    ocb_put_le32(r + 8, md->ssa_frame_size);
    ocb_put_le64(r + 12, md->enclave_size);
    if (put(&m, r, 64) != 0 || measure_segments(&m, f, img) != 0 || measure_layout(&m, md) != 0 ||
        flush(&m) != 0)
        goto out;
    unsigned len = 0;
    if (EVP_DigestFinal_ex(m.md, mrenclave, &len) != 1 || len != 32) {
        ocb_fail(e, "SHA-256 failed");
        goto out;
    }
    rc = 0;
out:
    EVP_MD_CTX_free(m.md);
    free(m.buf);
    free(img);
    return rc;
}

int ocb_tcs_oentry(const struct ocb_enclave_file *f, uint64_t *oentry, struct ocb_err *e)
{
    const struct ocb_metadata *md = &f->meta;
    const uint8_t *tab = md->raw + md->dir_offset[OCB_DIR_LAYOUT];
    for (uint32_t i = 0; i < md->dir_size[OCB_DIR_LAYOUT] / 32; i++) {
        struct entry en;
        read_entry(tab + 32 * i, &en);
        if (!(en.id & GROUP_FLAG) && (en.si_flags & 0xff00) == SI_FLAG_TCS &&
            en.content_offset != 0 && en.content_size >= 40 &&
            (uint64_t)en.content_offset + en.content_size <= OCB_METADATA_SIZE) {
            *oentry = ocb_le64(md->raw + en.content_offset + OCB_TCS_OENTRY);
            return 0;
        }
    }
    return ocb_fail(e, "metadata has no TCS entry");
}
