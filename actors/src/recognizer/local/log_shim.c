/*
 * PocketSphinx reports through a C callback that takes a printf format and variadic arguments
 * (sphinxbase's err_cb_f). Stable Rust cannot define a variadic function, so this shim formats the
 * message and hands it to the Rust sink passed as the callback's user data
 * (see ffi.rs, `install_log_sink`).
 */
#include <stdarg.h>
#include <stdio.h>

typedef void (*voxgate_log_sink)(int level, const char *message);

void voxgate_pocketsphinx_log(void *user_data, int level, const char *format, ...)
{
    char message[1024];
    va_list args;

    if (user_data == NULL || format == NULL)
        return;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    ((voxgate_log_sink)user_data)(level, message);
}
