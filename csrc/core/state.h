/* state.h: the state handle's layout, shared by state.c (life cycle, copies) and state_file.c (files). */
#ifndef RC_STATE_H
#define RC_STATE_H

#include "core/model.h"

struct rwkv_state {
    rwkv_model_info shape;        /* arch and dimensions of the model it was created for */
    const rc_arch *arch;
    uint64_t size;                /* floats */
    float *data;                  /* [size], laid out as docs/FILE_FORMAT.md "State layout" says */
};

#endif
