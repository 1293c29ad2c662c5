/* Boot step (a), see verify.h and docs/runtime.md.
 *
 * The builtin config is read by running the enclave's own entry point on the measured image
 * (the TCS oentry recorded in the measured metadata), not through section headers, which the
 * measurement does not cover. */
#include "verify.h"

#include "enclave/enclave.h"
#include "sgxmeta.h"

#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_LIBOS_SIZE (256u << 20)

static int fail_named(struct ocb_err *e, const char *name)
{
    char tmp[sizeof e->msg];
    memcpy(tmp, e->msg, sizeof tmp);
    return ocb_fail(e, "%s: %s", name, tmp);
}

static uint64_t page_up(uint64_t v) { return (v + OCB_PAGE - 1) & ~(uint64_t)(OCB_PAGE - 1); }

/* Apply R_X86_64_RELATIVE relocations found through PT_DYNAMIC (all inside measured memory). */
static int relocate(const struct ocb_enclave_file *f, const uint8_t *img, uint8_t *base,
                    uint64_t span, struct ocb_err *e)
{
    Elf64_Ehdr eh;
    memcpy(&eh, img, sizeof eh);
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, img + eh.e_phoff + (uint64_t)i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_DYNAMIC)
            continue;
        if (ph.p_vaddr > span || ph.p_memsz > span - ph.p_vaddr)
            return ocb_fail(e, "PT_DYNAMIC outside the image");
        uint64_t rela = 0, relasz = 0;
        for (uint64_t off = 0; off + sizeof(Elf64_Dyn) <= ph.p_memsz; off += sizeof(Elf64_Dyn)) {
            Elf64_Dyn d;
            memcpy(&d, base + ph.p_vaddr + off, sizeof d);
            if (d.d_tag == DT_NULL)
                break;
            if (d.d_tag == DT_RELA)
                rela = d.d_un.d_ptr;
            else if (d.d_tag == DT_RELASZ)
                relasz = d.d_un.d_val;
            else if (d.d_tag == DT_TEXTREL || d.d_tag == DT_JMPREL || d.d_tag == DT_REL)
                return ocb_fail(e, "unsupported dynamic entry %lld", (long long)d.d_tag);
        }
        if (rela > span || relasz > span - rela)
            return ocb_fail(e, "relocations outside the image");
        for (uint64_t off = 0; off + sizeof(Elf64_Rela) <= relasz; off += sizeof(Elf64_Rela)) {
            Elf64_Rela r;
            memcpy(&r, base + rela + off, sizeof r);
            if (ELF64_R_TYPE(r.r_info) == R_X86_64_NONE)
                continue;
            if (ELF64_R_TYPE(r.r_info) != R_X86_64_RELATIVE || r.r_offset > span - 8)
                return ocb_fail(e, "unsupported relocation at 0x%llx", (unsigned long long)r.r_offset);
            uint64_t v = (uint64_t)(uintptr_t)base + (uint64_t)r.r_addend;
            memcpy(base + r.r_offset, &v, 8);
        }
    }
    (void)f;
    return 0;
}

/* Map the patched image, call its entry point for the builtin config and the version. */
static int run_enclave(const struct ocb_enclave_file *f, const uint8_t *img, struct ocb_libos *out,
                       struct ocb_err *e)
{
    uint64_t span = 0;
    for (size_t i = 0; i < f->nsegs; i++)
        if (page_up(f->segs[i].vaddr + f->segs[i].memsz) > span)
            span = page_up(f->segs[i].vaddr + f->segs[i].memsz);
    uint64_t oentry;
    if (ocb_tcs_oentry(f, &oentry, e) != 0)
        return -1;
    int entry_ok = 0;
    for (size_t i = 0; i < f->nsegs; i++)
        if ((f->segs[i].flags & PF_X) && oentry >= f->segs[i].vaddr &&
            oentry < f->segs[i].vaddr + f->segs[i].memsz)
            entry_ok = 1;
    if (!entry_ok)
        return ocb_fail(e, "enclave entry 0x%llx is not in an executable segment",
                        (unsigned long long)oentry);
    int marked = 0;
    for (size_t i = 0; i < f->nsegs && !marked; i++)
        marked = memmem(img + f->segs[i].offset, f->segs[i].filesz, OCCLUM_ENCLAVE_MARKER,
                        sizeof OCCLUM_ENCLAVE_MARKER) != NULL;
    if (!marked)
        return ocb_fail(e, "not an occlum-build LibOS (marker \"%s\" missing)", OCCLUM_ENCLAVE_MARKER);
    uint8_t *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return ocb_fail(e, "cannot map the enclave image");
    int rc = -1;
    for (size_t i = 0; i < f->nsegs; i++)
        memcpy(base + f->segs[i].vaddr, img + f->segs[i].offset, f->segs[i].filesz);
    if (relocate(f, img, base, span, e) != 0)
        goto out;
    for (size_t i = 0; i < f->nsegs; i++) {
        const struct ocb_segment *s = &f->segs[i];
        uint64_t lo = s->vaddr & ~(uint64_t)(OCB_PAGE - 1);
        int prot = ((s->flags & PF_R) ? PROT_READ : 0) | ((s->flags & PF_W) ? PROT_WRITE : 0) |
                   ((s->flags & PF_X) ? PROT_EXEC : 0);
        if (mprotect(base + lo, page_up(s->vaddr + s->memsz) - lo, prot) != 0) {
            ocb_fail(e, "cannot protect the enclave image");
            goto out;
        }
    }
    occlum_enclave_entry_fn entry = (occlum_enclave_entry_fn)(uintptr_t)(base + oentry);
    uint8_t cfg[OCCLUM_ENCLAVE_BUILTIN_CONFIG_SIZE];
    if (entry(OCCLUM_ECALL_GET_VERSION, &out->version) != 0 ||
        entry(OCCLUM_ECALL_GET_BUILTIN_CONFIG, cfg) != 0) {
        ocb_fail(e, "the enclave refused its ECALLs");
        goto out;
    }
    static const uint8_t zero[OCCLUM_ENCLAVE_BUILTIN_CONFIG_SIZE];
    if (memcmp(cfg, zero, sizeof cfg) == 0) {
        ocb_fail(e, ".builtin_config is all zero (no conf MAC: the LibOS was not built by occlum build)");
        goto out;
    }
    if (ocb_parse_key16((const char *)cfg, sizeof cfg, out->conf_mac) != 0) {
        ocb_fail(e, ".builtin_config does not hold a conf MAC");
        goto out;
    }
    rc = 0;
out:
    munmap(base, span);
    return rc;
}

int ocb_verify_libos_buf(const char *name, const uint8_t *data, size_t size,
                         struct ocb_libos *out, struct ocb_err *e)
{
    memset(out, 0, sizeof *out);
    struct ocb_enclave_file f;
    if (ocb_enclave_parse(data, size, &f, e) != 0 || ocb_sigstruct_verify(&f.css, e) != 0)
        return fail_named(e, name);
    uint8_t mr[32];
    if (ocb_measure(&f, f.meta.enclave_size / OCB_PAGE, mr, e) != 0)
        return fail_named(e, name);
    if (memcmp(mr, f.css.enclavehash, 32) != 0) {
        char got[65], want[65];
        ocb_hex(mr, 32, got);
        ocb_hex(f.css.enclavehash, 32, want);
        return ocb_fail(e, "%s: measurement %s does not match the signed ENCLAVEHASH %s (the file was modified after signing)",
                        name, got, want);
    }
    memcpy(out->mrenclave, mr, 32);
    ocb_sigstruct_mrsigner(&f.css, out->mrsigner);
    out->isvprodid = f.css.isvprodid;
    out->isvsvn = f.css.isvsvn;
    out->miscselect = f.css.miscselect;
    out->attributes_flags = f.css.attributes_flags;
    out->attributes_xfrm = f.css.attributes_xfrm;
    out->attributemask_flags = f.css.attributemask_flags;
    memcpy(out->isvfamilyid, f.css.isvfamilyid, 16);
    memcpy(out->isvextprodid, f.css.isvextprodid, 16);
    /* Patch 0 is the g_global_data template (measured): its tcs_max_num. */
    if (f.meta.dir_size[OCB_DIR_PATCH] >= OCB_PE_STRUCT_SIZE) {
        const uint8_t *p0 = f.meta.raw + f.meta.dir_offset[OCB_DIR_PATCH];
        uint32_t src = ocb_le32(p0 + OCB_PE_SRC), len = ocb_le32(p0 + OCB_PE_SIZE);
        if (len >= OCB_GD_TCS_MAX_NUM + 8 && (uint64_t)src + len <= OCB_METADATA_SIZE)
            out->tcs_max_num = ocb_le64(f.meta.raw + src + OCB_GD_TCS_MAX_NUM);
    }
    uint8_t *img = NULL;
    if (ocb_patched_image(&f, &img, e) != 0)
        return fail_named(e, name);
    int rc = run_enclave(&f, img, out, e);
    free(img);
    return rc == 0 ? 0 : fail_named(e, name);
}

int ocb_verify_libos(const char *path, struct ocb_libos *out, struct ocb_err *e)
{
    uint8_t *data;
    size_t size;
    if (ocb_read_file(path, MAX_LIBOS_SIZE, &data, &size, e) != 0)
        return -1;
    int rc = ocb_verify_libos_buf(path, data, size, out, e);
    free(data);
    return rc;
}
