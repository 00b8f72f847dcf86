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
	f.Var(sizeValue{&o.DefaultMemory, 64 << 20, 64 << 30, false}, "default-memory", "memory limit of an instance or app exec container whose app.yaml sets no memory, 64M to 64G")
	f.Var(countValue{&o.Quota.Apps}, "quota-apps", "apps a namespace may have, unless namespace quota set says otherwise; 0 for no limit")
	f.Var(countValue{&o.Quota.Instances}, "quota-instances", "instances (every process type, every app) a namespace may run; 0 for no limit")
	f.Var(sizeValue{&o.Quota.Memory, 64 << 20, 1 << 50, true}, "quota-memory", "memory limits of a namespace's instances added up, such as 8G; 0 for no limit")
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

// sizeValue is a size flag in app.yaml's syntax (512M, 2G), from min to
// max; with orNone, 0 is no limit.
type sizeValue struct {
	p        *int64
	min, max int64
	orNone   bool
}

func (v sizeValue) String() string { return appspec.FormatSize(*v.p) }
func (v sizeValue) Type() string   { return "size" }
func (v sizeValue) Set(s string) error {
	if s == "0" && v.orNone {
		*v.p = 0
		return nil
	}
	n, err := appspec.ParseSize(s)
	if err != nil || n < v.min || n > v.max {
		none := ""
		if v.orNone {
			none = ", or 0 for no limit"
		}
		return fmt.Errorf("want a size from %s to %s such as 512M or 2G%s", appspec.FormatSize(v.min), appspec.FormatSize(v.max), none)
	}
	*v.p = n
	return nil
}
