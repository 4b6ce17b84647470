/* libFuzzer harness: the Filter with a rule table built from each input;
 * fuzz_filter.c explains both variants. */
#define FUZZ_FILTER_RULES_FROM_INPUT
#include "fuzz_filter.c"
