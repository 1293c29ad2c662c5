/* ELF, metadata_t and SIGSTRUCT parsing (sgxmeta.h).  Every read is bounds-checked: the input
 * is untrusted until the signature and the measurement have been checked. */
#include "sgxmeta.h"

#include <elf.h>
#include <string.h>

int ocb_field_offset(const struct ocb_field *table, const char *name)
{
    for (; table->name != NULL; table++)
        if (strcmp(table->name, name) == 0)
            return (int)table->offset;
    return -1;
}

/* Offsets come from sgx_layout.h, generated from the Python field tables (one source). */
#define SS(f) (raw + OCB_SS_##f)


static const uint8_t css_header[16] = {6, 0, 0, 0, 0xE1, 0, 0, 0, 0, 0, 1, 0};
static const uint8_t css_header2[16] = {1, 1, 0, 0, 0x60, 0, 0, 0, 0x60, 0, 0, 0, 1, 0, 0, 0};

int ocb_sigstruct_parse(const uint8_t *raw, size_t size, struct ocb_sigstruct *out,
                        struct ocb_err *e)
{
    if (size < OCB_SIGSTRUCT_SIZE)
        return ocb_fail(e, "SIGSTRUCT truncated (%zu bytes, need %u)", size, OCB_SIGSTRUCT_SIZE);
    memset(out, 0, sizeof *out);
    memcpy(out->header, SS(HEADER), 16);
    memcpy(out->header2, SS(HEADER2), 16);
    /* The last 4 header bytes are the type (bit 31: ReleaseType); the rest is fixed. */
    if (memcmp(out->header, css_header, 12) != 0 || (ocb_le32(out->header + 12) & 0x7fffffffu))
        return ocb_fail(e, "SIGSTRUCT header is not the SGX constant");
    if (memcmp(out->header2, css_header2, 16) != 0)
        return ocb_fail(e, "SIGSTRUCT header2 is not the SGX constant");
    out->vendor = ocb_le32(SS(VENDOR));
    out->date = ocb_le32(SS(DATE));
    out->swdefined = ocb_le32(SS(SWDEFINED));
    memcpy(out->modulus, SS(MODULUS), 384);
    out->exponent = ocb_le32(SS(EXPONENT));
    memcpy(out->signature, SS(SIGNATURE), 384);
    out->miscselect = ocb_le32(SS(MISCSELECT));
    out->miscmask = ocb_le32(SS(MISCMASK));
    memcpy(out->isvfamilyid, SS(ISVFAMILYID), 16);
    out->attributes_flags = ocb_le64(SS(ATTRIBUTES_FLAGS));
    out->attributes_xfrm = ocb_le64(SS(ATTRIBUTES_XFRM));
    out->attributemask_flags = ocb_le64(SS(ATTRIBUTEMASK_FLAGS));
    out->attributemask_xfrm = ocb_le64(SS(ATTRIBUTEMASK_XFRM));
    memcpy(out->enclavehash, SS(ENCLAVEHASH), 32);
    memcpy(out->isvextprodid, SS(ISVEXTPRODID), 16);
    out->isvprodid = ocb_le16(SS(ISVPRODID));
    out->isvsvn = ocb_le16(SS(ISVSVN));
    memcpy(out->q1, SS(Q1), 384);
    memcpy(out->q2, SS(Q2), 384);
    memcpy(out->signed_data, raw, 128);
    memcpy(out->signed_data + 128, raw + OCB_SS_MISCSELECT, 128);
    return 0;
}

#define MD(f) (raw + OCB_MD_##f)

int ocb_metadata_parse(const uint8_t *raw, size_t size, struct ocb_metadata *out,
                       struct ocb_err *e)
{
    if (size < OCB_METADATA_SIZE)
        return ocb_fail(e, "metadata truncated (%zu bytes, need %u)", size, OCB_METADATA_SIZE);
    memset(out, 0, sizeof *out);
    out->raw = raw;
    out->magic = ocb_le64(MD(MAGIC_NUM));
    if (out->magic != OCB_METADATA_MAGIC)
        return ocb_fail(e, "no SGX metadata (bad magic: the enclave is not signed)");
    out->version = ocb_le64(MD(VERSION));
    out->size = ocb_le32(MD(SIZE));
    out->tcs_policy = ocb_le32(MD(TCS_POLICY));
    out->ssa_frame_size = ocb_le32(MD(SSA_FRAME_SIZE));
    out->max_save_buffer_size = ocb_le32(MD(MAX_SAVE_BUFFER_SIZE));
    out->desired_misc_select = ocb_le32(MD(DESIRED_MISC_SELECT));
    out->tcs_min_pool = ocb_le32(MD(TCS_MIN_POOL));
    out->enclave_size = ocb_le64(MD(ENCLAVE_SIZE));
    out->attributes_flags = ocb_le64(MD(ATTRIBUTES_FLAGS));
    out->attributes_xfrm = ocb_le64(MD(ATTRIBUTES_XFRM));
    if (out->size < OCB_MD_STRUCT_SIZE || out->size > OCB_METADATA_SIZE)
        return ocb_fail(e, "metadata size %u out of range", out->size);
    const uint8_t *dirs = MD(DIR_PATCH_OFFSET);
    for (int i = 0; i < 4; i++) {
        out->dir_offset[i] = ocb_le32(dirs + 8 * i);
        out->dir_size[i] = ocb_le32(dirs + 8 * i + 4);
        if ((uint64_t)out->dir_offset[i] + out->dir_size[i] > out->size)
            return ocb_fail(e, "metadata directory %d outside the metadata", i);
    }
    if (out->dir_size[OCB_DIR_PATCH] % 32 || out->dir_size[OCB_DIR_LAYOUT] % 32)
        return ocb_fail(e, "metadata patch/layout table size not a multiple of 32");
    return 0;
}

int ocb_enclave_parse(const uint8_t *data, size_t size, struct ocb_enclave_file *out,
                      struct ocb_err *e)
{
    memset(out, 0, sizeof *out);
    out->data = data;
    out->size = size;
    Elf64_Ehdr eh;
    if (size < sizeof eh)
        return ocb_fail(e, "not an ELF file (too short)");
    memcpy(&eh, data, sizeof eh);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_ident[EI_DATA] != ELFDATA2LSB)
        return ocb_fail(e, "not a little-endian ELF64 file");
    if (eh.e_type != ET_DYN || eh.e_machine != EM_X86_64)
        return ocb_fail(e, "not an x86-64 shared object");
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > size ||
        (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > size - eh.e_phoff)
        return ocb_fail(e, "program headers outside the file");
    uint64_t last_end = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, data + eh.e_phoff + (uint64_t)i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD)
            continue;
        if (out->nsegs == OCB_MAX_SEGS)
            return ocb_fail(e, "too many PT_LOAD segments");
        if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset || ph.p_filesz > ph.p_memsz)
            return ocb_fail(e, "PT_LOAD segment %u outside the file", i);
        if (ph.p_memsz > (1ULL << 40) || ph.p_vaddr > (1ULL << 40))
            return ocb_fail(e, "PT_LOAD segment %u too large", i);
        if ((ph.p_flags & (PF_R | PF_W | PF_X)) == 0)
            return ocb_fail(e, "PT_LOAD segment %u has no R/W/X permission", i);
        if ((ph.p_vaddr & ~(uint64_t)(OCB_PAGE - 1)) < last_end)
            return ocb_fail(e, "PT_LOAD segment %u overlaps the previous one", i);
        last_end = (ph.p_vaddr + ph.p_memsz + OCB_PAGE - 1) & ~(uint64_t)(OCB_PAGE - 1);
        struct ocb_segment *s = &out->segs[out->nsegs++];
        s->offset = ph.p_offset;
        s->vaddr = ph.p_vaddr;
        s->filesz = ph.p_filesz;
        s->memsz = ph.p_memsz;
        s->flags = ph.p_flags;
    }
    if (out->nsegs == 0)
        return ocb_fail(e, "no PT_LOAD segment");

    /* .note.sgxmeta through the section headers (not measured; the metadata is checked by
     * replaying the measurement it describes). */
    if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shoff > size ||
        (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr) > size - eh.e_shoff || eh.e_shstrndx >= eh.e_shnum)
        return ocb_fail(e, "section headers outside the file");
    Elf64_Shdr strsh;
    memcpy(&strsh, data + eh.e_shoff + (uint64_t)eh.e_shstrndx * sizeof strsh, sizeof strsh);
    if (strsh.sh_offset > size || strsh.sh_size > size - strsh.sh_offset)
        return ocb_fail(e, "section name table outside the file");
    int found = 0;
    for (unsigned i = 0; i < eh.e_shnum && !found; i++) {
        Elf64_Shdr sh;
        memcpy(&sh, data + eh.e_shoff + (uint64_t)i * sizeof sh, sizeof sh);
        static const char want[] = ".note.sgxmeta";
        if (sh.sh_name >= strsh.sh_size || strsh.sh_size - sh.sh_name < sizeof want ||
            memcmp(data + strsh.sh_offset + sh.sh_name, want, sizeof want) != 0)
            continue;
        if (sh.sh_offset > size || sh.sh_size > size - sh.sh_offset || sh.sh_size < 12)
            return ocb_fail(e, ".note.sgxmeta outside the file");
        const uint8_t *note = data + sh.sh_offset;
        uint32_t namesz = ocb_le32(note), descsz = ocb_le32(note + 4);
        if (namesz != 13 || memcmp(note + 12, "sgx_metadata", 13) != 0)
            return ocb_fail(e, ".note.sgxmeta is not an sgx_metadata note");
        if (descsz < OCB_METADATA_SIZE || 12 + 13 + (uint64_t)descsz > sh.sh_size)
            return ocb_fail(e, ".note.sgxmeta descriptor too small");
        out->meta_offset = sh.sh_offset + 12 + 13;
        found = 1;
    }
    if (!found)
        return ocb_fail(e, "no .note.sgxmeta section");
    if (ocb_metadata_parse(data + out->meta_offset, OCB_METADATA_SIZE, &out->meta, e) != 0)
        return -1;
    return ocb_sigstruct_parse(out->meta.raw + OCB_MD_ENCLAVE_CSS,
                               OCB_SIGSTRUCT_SIZE, &out->css, e);
}
