#include "base/err.h"

const char *err_name(int code)
{
    switch (code) {
#define ERR_NAME_CASE(name, value, message)                                    \
    case value: return #name;
        ERR_TABLE(ERR_NAME_CASE)
#undef ERR_NAME_CASE
    }
    return "ERR_UNKNOWN";
}

const char *err_msg(int code)
{
    switch (code) {
#define ERR_MSG_CASE(name, value, message)                                     \
    case value: return message;
        ERR_TABLE(ERR_MSG_CASE)
#undef ERR_MSG_CASE
    }
    return "unknown error";
}
