/* get_current_rate of both forks (network.c), over a struct holding the [net] fields it reads.
 * pjreddie's batch_num is a size_t (get_current_batch), AlexeyAB's an int; the rest is the same
 * code, except that only AlexeyAB has SGDR. Policies as in darknet.h. */
#include <math.h>
#include <stddef.h>

enum { CONSTANT, STEP, EXP, POLY, STEPS, SIG, RANDOM, SGDR };

typedef struct {
    float learning_rate, learning_rate_min, power, scale, gamma;
    int policy, burn_in, step, max_batches, num_steps, batches_per_cycle, batches_cycle_mult;
    int *steps;
    float *scales;
    float uniform; /* rand_uniform(0,1) for RANDOM */
} net_t;

float rate_pjreddie(net_t *net, size_t batch_num)
{
    int i;
    float rate;
    if (batch_num < net->burn_in) return net->learning_rate * pow((float)batch_num / net->burn_in, net->power);
    switch (net->policy) {
        case CONSTANT:
            return net->learning_rate;
        case STEP:
            return net->learning_rate * pow(net->scale, batch_num/net->step);
        case STEPS:
            rate = net->learning_rate;
            for(i = 0; i < net->num_steps; ++i){
                if(net->steps[i] > batch_num) return rate;
                rate *= net->scales[i];
            }
            return rate;
        case EXP:
            return net->learning_rate * pow(net->gamma, batch_num);
        case POLY:
            return net->learning_rate * pow(1 - (float)batch_num / net->max_batches, net->power);
        case RANDOM:
            return net->learning_rate * pow(net->uniform, net->power);
        case SIG:
            return net->learning_rate * (1./(1.+exp(net->gamma*(batch_num - net->step))));
        default:
            return net->learning_rate;
    }
}

float rate_alexeyab(net_t *net, int batch_num)
{
    int i;
    float rate;
    if (batch_num < net->burn_in) return net->learning_rate * pow((float)batch_num / net->burn_in, net->power);
    switch (net->policy) {
        case CONSTANT:
            return net->learning_rate;
        case STEP:
            return net->learning_rate * pow(net->scale, batch_num/net->step);
        case STEPS:
            rate = net->learning_rate;
            for (i = 0; i < net->num_steps; ++i) {
                if (net->steps[i] > batch_num) return rate;
                rate *= net->scales[i];
            }
            return rate;
        case EXP:
            return net->learning_rate * pow(net->gamma, batch_num);
        case POLY:
            return net->learning_rate * pow(1 - (float)batch_num / net->max_batches, net->power);
        case RANDOM:
            return net->learning_rate * pow(net->uniform, net->power);
        case SIG:
            return net->learning_rate * (1./(1.+exp(net->gamma*(batch_num - net->step))));
        case SGDR:
        {
            int last_iteration_start = 0;
            int cycle_size = net->batches_per_cycle;
            while ((last_iteration_start + cycle_size) < batch_num)
            {
                last_iteration_start += cycle_size;
                cycle_size *= net->batches_cycle_mult;
            }
            rate = net->learning_rate_min +
                0.5*(net->learning_rate - net->learning_rate_min)
                * (1. + cos((float)(batch_num - last_iteration_start)*3.14159265 / cycle_size));
            return rate;
        }
        default:
            return net->learning_rate;
    }
}
