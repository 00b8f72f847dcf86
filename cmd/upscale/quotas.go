package main

import (
	"fmt"
	"math"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/store"
)

// limitOptions are the operator's defaults of what a tenant may hold.
type limitOptions struct {
	DefaultCPU    float64
	DefaultMemory int64
	Quota         store.Quota
}

func (o *limitOptions) register(f *pflag.FlagSet) {
	o.DefaultCPU, o.DefaultMemory, o.Quota = deploy.DefaultCPU, deploy.DefaultMemory, deploy.DefaultQuota
	f.Var(cpuValue{&o.DefaultCPU}, "default-cpu", "CPU limit, in cores, of an instance or app exec container whose app.yaml sets no cpu; 0 for none")
	f.Var(sizeValue{&o.DefaultMemory, false}, "default-memory", "memory limit of an instance or app exec container whose app.yaml sets no memory, 64M to 64G")
	f.Var(countValue{&o.Quota.Apps}, "quota-apps", "apps a namespace may have, unless namespace quota set says otherwise; 0 for no limit")
	f.Var(countValue{&o.Quota.Instances}, "quota-instances", "instances (every process type, every app) a namespace may run; 0 for no limit")
	f.Var(sizeValue{&o.Quota.Memory, true}, "quota-memory", "memory limits of a namespace's instances added up, such as 8G; 0 for no limit")
	f.Var(countValue{&o.Quota.Exec}, "quota-exec", "app exec commands a namespace may run at once; 0 for no limit")
}

type cpuValue struct{ p *float64 }

func (v cpuValue) String() string { return strconv.FormatFloat(*v.p, 'g', -1, 64) }
func (v cpuValue) Type() string   { return "cores" }
func (v cpuValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f != 0 && (f < 0.01 || f > 64) {
		return fmt.Errorf("want a share of a core from 0.01 to 64, such as 0.5 or 2, or 0 for no limit")
	}
	*v.p = f
	return nil
}

type countValue struct{ p *int }

func (v countValue) String() string { return strconv.Itoa(*v.p) }
func (v countValue) Type() string   { return "count" }
func (v countValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1_000_000 {
		return fmt.Errorf("want a whole number from 0 (no limit) to 1000000")
	}
	*v.p = n
	return nil
}

// sizeValue is a size flag; with orNone, 0 is no limit.
type sizeValue struct {
	p      *int64
	orNone bool
}

func (v sizeValue) String() string { return appspec.FormatSize(*v.p) }
func (v sizeValue) Type() string   { return "size" }
func (v sizeValue) Set(s string) error {
	if s == "0" && v.orNone {
		*v.p = 0
		return nil
	}
	n, err := appspec.ParseSize(s)
	if !v.orNone && (err != nil || n < 64<<20 || n > 64<<30) {
		return fmt.Errorf("want a size from 64M to 64G such as 512M or 2G")
	}
	if err != nil || n < 64<<20 || n > 1<<50 {
		return fmt.Errorf("want a size from 64M such as 8G or 512M, or 0 for no limit")
	}
	*v.p = n
	return nil
}
