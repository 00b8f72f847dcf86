// Package ec2test is a local stand-in for the EC2 Query API, for tests:
// RunInstances, DescribeInstances, TerminateInstances and CreateTags over
// an in-memory instance table, answered in the XML the AWS SDKs parse
// (namespace 2016-11-15), errors included. Instances go pending → running
// after Config.Pending and shutting-down → terminated after
// Config.ShuttingDown.
package ec2test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Namespace is the XML namespace of EC2 API version 2016-11-15, the one
// every SDK speaks.
const Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// Config shapes the stand-in. The zero value accepts any AMI, has no
// instance limit and uses short delays.
type Config struct {
	// Images are the AMIs that exist; RunInstances of another fails with
	// InvalidAMIID.NotFound. Empty = every id exists.
	Images []string
	// Limit is the most instances not terminated; going over fails with
	// InstanceLimitExceeded. 0 = no limit.
	Limit int
	// Pending and ShuttingDown are how long instances stay in those states,
	// default 100 ms each.
	Pending, ShuttingDown time.Duration
	// PrivateIP gives a new instance its address; nil = 172.31.0.10, .11...
	PrivateIP func(id string) string
	// OnRun is called, in its own goroutine, when an instance becomes
	// running, with its decoded user data. Close waits for it to return.
	OnRun func(id string, userData []byte)
}

// Instance is one row of the stand-in's table.
type Instance struct {
	ID, ImageID, Type, KeyName, SubnetID, PrivateIP, ClientToken string
	SecurityGroupIDs, SecurityGroups                             []string
	State                                                        string // pending, running, shutting-down, terminated
	Tags                                                         map[string]string
	UserData                                                     []byte
	Launched                                                     time.Time
	MetadataTokens                                               string // HttpTokens asked at launch
}

// Request is one API call the stand-in received.
type Request struct {
	Action string
	Params url.Values
}

// Server is a running stand-in.
type Server struct {
	URL string

	cfg  Config
	http *httptest.Server

	mu        sync.Mutex
	instances map[string]*Instance
	order     []string
	requests  []Request
	failNext  map[string]apiError
	timers    []*time.Timer
	closed    bool
	running   sync.WaitGroup
}

// New starts a stand-in; Close stops it.
func New(cfg Config) *Server {
	if cfg.Pending <= 0 {
		cfg.Pending = 100 * time.Millisecond
	}
	if cfg.ShuttingDown <= 0 {
		cfg.ShuttingDown = 100 * time.Millisecond
	}
	s := &Server{cfg: cfg, instances: map[string]*Instance{}, failNext: map[string]apiError{}}
	s.http = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.http.URL
	return s
}

// Close stops the server and the state timers, then waits for OnRun calls
// in progress.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for _, t := range s.timers {
		t.Stop()
	}
	s.mu.Unlock()
	s.http.Close()
	s.running.Wait()
}

// SetLimit changes Config.Limit.
func (s *Server) SetLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Limit = n
}

// FailNext makes the next call of action fail with code and message (HTTP
// 400), whatever its parameters.
func (s *Server) FailNext(action, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[action] = apiError{status: http.StatusBadRequest, code: code, message: message}
}

// Instances returns copies of every instance, in launch order.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Instance, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.instances[id].clone())
	}
	return out
}

// Instance returns a copy of instance id.
func (s *Server) Instance(id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.instances[id]
	if !ok {
		return Instance{}, false
	}
	return i.clone(), true
}

// Requests returns the calls received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (i *Instance) clone() Instance {
	c := *i
	c.Tags = maps.Clone(i.Tags)
	c.UserData = slices.Clone(i.UserData)
	c.SecurityGroupIDs = slices.Clone(i.SecurityGroupIDs)
	c.SecurityGroups = slices.Clone(i.SecurityGroups)
	return c
}

type apiError struct {
	status        int
	code, message string
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, apiError{http.StatusBadRequest, "InvalidAction", "the EC2 Query API takes POST"})
		return
	}
	// SigV4 is not verified, only required: the client under test must be
	// signing with some credentials.
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		writeError(w, apiError{http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		writeError(w, apiError{http.StatusBadRequest, "MalformedQueryString", err.Error()})
		return
	}
	p := r.PostForm
	action := p.Get("Action")
	if v := p.Get("Version"); v != "2016-11-15" {
		writeError(w, apiError{http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("unsupported API version %q", v)})
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, Request{Action: action, Params: p})
	fail, failing := s.failNext[action]
	delete(s.failNext, action)
	s.mu.Unlock()
	if failing {
		writeError(w, fail)
		return
	}
	var (
		body any
		aerr *apiError
	)
	switch action {
	case "RunInstances":
		body, aerr = s.runInstances(p)
	case "DescribeInstances":
		body, aerr = s.describeInstances(p)
	case "TerminateInstances":
		body, aerr = s.terminateInstances(p)
	case "CreateTags":
		body, aerr = s.createTags(p)
	default:
		aerr = &apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("The action %s is not valid for this web service.", action)}
	}
	if aerr != nil {
		writeError(w, *aerr)
		return
	}
	out, err := xml.Marshal(body)
	if err != nil {
		writeError(w, apiError{http.StatusInternalServerError, "InternalError", err.Error()})
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Write([]byte(xml.Header))
	w.Write(out)
}

func writeError(w http.ResponseWriter, e apiError) {
	type xmlError struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	type response struct {
		XMLName   xml.Name   `xml:"Response"`
		Errors    []xmlError `xml:"Errors>Error"`
		RequestID string     `xml:"RequestID"`
	}
	out, _ := xml.Marshal(response{Errors: []xmlError{{e.code, e.message}}, RequestID: newID("")})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	w.Write([]byte(xml.Header))
	w.Write(out)
}

func newID(prefix string) string {
	b := make([]byte, 9)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)[:17]
}

// list collects name.1, name.2, ... until the first missing index.
func list(p url.Values, name string) []string {
	var out []string
	for n := 1; ; n++ {
		v, ok := p[name+"."+strconv.Itoa(n)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

func (s *Server) runInstances(p url.Values) (any, *apiError) {
	ami := p.Get("ImageId")
	if ami == "" {
		return nil, &apiError{http.StatusBadRequest, "MissingParameter", "The request must contain the parameter ImageId"}
	}
	minCount, err1 := strconv.Atoi(p.Get("MinCount"))
	maxCount, err2 := strconv.Atoi(p.Get("MaxCount"))
	if err1 != nil || err2 != nil || minCount < 1 || maxCount < minCount {
		return nil, &apiError{http.StatusBadRequest, "InvalidParameterValue", "MinCount and MaxCount must be positive, MinCount <= MaxCount"}
	}
	var userData []byte
	if ud := p.Get("UserData"); ud != "" {
		var err error
		if userData, err = base64.StdEncoding.DecodeString(ud); err != nil {
			return nil, &apiError{http.StatusBadRequest, "InvalidParameterValue", "Invalid BASE64 encoding of user data."}
		}
	}
	if len(userData) > 16<<10 {
		return nil, &apiError{http.StatusBadRequest, "InvalidParameterValue", "User data is limited to 16384 bytes"}
	}
	tags := map[string]string{}
	for n := 1; ; n++ {
		prefix := "TagSpecification." + strconv.Itoa(n) + "."
		rt, ok := p[prefix+"ResourceType"]
		if !ok {
			break
		}
		if rt[0] != "instance" {
			continue
		}
		for m := 1; ; m++ {
			k, ok := p[prefix+"Tag."+strconv.Itoa(m)+".Key"]
			if !ok {
				break
			}
			tags[k[0]] = p.Get(prefix + "Tag." + strconv.Itoa(m) + ".Value")
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	token := p.Get("ClientToken")
	if token != "" {
		// Idempotency: the SDK retries a RunInstances whose answer it lost
		// with the same token; EC2 answers with the first launch.
		var same []*Instance
		for _, id := range s.order {
			if i := s.instances[id]; i.ClientToken == token {
				same = append(same, i)
			}
		}
		if len(same) > 0 {
			return s.reservation("RunInstancesResponse", same), nil
		}
	}
	if len(s.cfg.Images) > 0 && !slices.Contains(s.cfg.Images, ami) {
		return nil, &apiError{http.StatusBadRequest, "InvalidAMIID.NotFound", fmt.Sprintf("The image id '[%s]' does not exist", ami)}
	}
	if s.cfg.Limit > 0 {
		live := 0
		for _, i := range s.instances {
			if i.State != "terminated" {
				live++
			}
		}
		if live+minCount > s.cfg.Limit {
			return nil, &apiError{http.StatusBadRequest, "InstanceLimitExceeded",
				fmt.Sprintf("You have requested more instances (%d) than your current instance limit of %d allows", live+minCount, s.cfg.Limit)}
		}
		maxCount = min(maxCount, s.cfg.Limit-live)
	}
	var launched []*Instance
	for range maxCount {
		id := newID("i-")
		ip := ""
		if s.cfg.PrivateIP != nil {
			ip = s.cfg.PrivateIP(id)
		} else {
			n := len(s.order) + 10
			ip = fmt.Sprintf("172.31.%d.%d", n/250, n%250)
		}
		typ := p.Get("InstanceType")
		if typ == "" {
			typ = "m1.small"
		}
		i := &Instance{
			ID: id, ImageID: ami, Type: typ, KeyName: p.Get("KeyName"), SubnetID: p.Get("SubnetId"),
			PrivateIP: ip, ClientToken: token, State: "pending", Tags: maps.Clone(tags),
			SecurityGroupIDs: list(p, "SecurityGroupId"), SecurityGroups: list(p, "SecurityGroup"),
			UserData: userData, Launched: time.Now().UTC(), MetadataTokens: p.Get("MetadataOptions.HttpTokens"),
		}
		s.instances[id] = i
		s.order = append(s.order, id)
		launched = append(launched, i)
		s.timers = append(s.timers, time.AfterFunc(s.cfg.Pending, func() { s.boot(id) }))
	}
	return s.reservation("RunInstancesResponse", launched), nil
}

// boot moves id from pending to running and calls OnRun.
func (s *Server) boot(id string) {
	s.mu.Lock()
	i := s.instances[id]
	if s.closed || i.State != "pending" {
		s.mu.Unlock()
		return
	}
	i.State = "running"
	ud := slices.Clone(i.UserData)
	onRun := s.cfg.OnRun
	if onRun != nil {
		s.running.Add(1)
	}
	s.mu.Unlock()
	if onRun != nil {
		defer s.running.Done()
		onRun(id, ud)
	}
}

func (s *Server) describeInstances(p url.Values) (any, *apiError) {
	ids := list(p, "InstanceId")
	filters := map[string][]string{}
	for n := 1; ; n++ {
		prefix := "Filter." + strconv.Itoa(n) + "."
		name, ok := p[prefix+"Name"]
		if !ok {
			break
		}
		filters[name[0]] = append(filters[name[0]], list(p, prefix+"Value")...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.instances[id]; !ok {
			return nil, &apiError{http.StatusBadRequest, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", id)}
		}
	}
	type reservation struct {
		ReservationID string        `xml:"reservationId"`
		OwnerID       string        `xml:"ownerId"`
		Instances     []instanceXML `xml:"instancesSet>item"`
	}
	type response struct {
		XMLName      xml.Name      `xml:"DescribeInstancesResponse"`
		XMLNS        string        `xml:"xmlns,attr"`
		RequestID    string        `xml:"requestId"`
		Reservations []reservation `xml:"reservationSet>item"`
	}
	resp := response{XMLNS: Namespace, RequestID: newID("")}
	for _, id := range s.order {
		i := s.instances[id]
		if (len(ids) > 0 && !slices.Contains(ids, id)) || !matches(i, filters) {
			continue
		}
		resp.Reservations = append(resp.Reservations, reservation{
			ReservationID: "r-" + id[2:], OwnerID: "123456789012", Instances: []instanceXML{toXML(i)},
		})
	}
	return resp, nil
}

// matches applies the filters the stand-in knows: instance-id,
// instance-state-name, tag:KEY and tag-key.
func matches(i *Instance, filters map[string][]string) bool {
	for name, values := range filters {
		var got []string
		switch {
		case name == "instance-id":
			got = []string{i.ID}
		case name == "instance-state-name":
			got = []string{i.State}
		case name == "tag-key":
			got = slices.Collect(maps.Keys(i.Tags))
		case strings.HasPrefix(name, "tag:"):
			if v, ok := i.Tags[name[len("tag:"):]]; ok {
				got = []string{v}
			}
		default:
			return false
		}
		if !slices.ContainsFunc(got, func(g string) bool { return slices.Contains(values, g) }) {
			return false
		}
	}
	return true
}

func (s *Server) terminateInstances(p url.Values) (any, *apiError) {
	ids := list(p, "InstanceId")
	if len(ids) == 0 {
		return nil, &apiError{http.StatusBadRequest, "MissingParameter", "The request must contain the parameter InstanceId"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.instances[id]; !ok {
			return nil, &apiError{http.StatusBadRequest, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", id)}
		}
	}
	type change struct {
		InstanceID string   `xml:"instanceId"`
		Current    stateXML `xml:"currentState"`
		Previous   stateXML `xml:"previousState"`
	}
	type response struct {
		XMLName   xml.Name `xml:"TerminateInstancesResponse"`
		XMLNS     string   `xml:"xmlns,attr"`
		RequestID string   `xml:"requestId"`
		Changes   []change `xml:"instancesSet>item"`
	}
	resp := response{XMLNS: Namespace, RequestID: newID("")}
	for _, id := range ids {
		i := s.instances[id]
		prev := i.State
		if prev != "terminated" && prev != "shutting-down" {
			i.State = "shutting-down"
			s.timers = append(s.timers, time.AfterFunc(s.cfg.ShuttingDown, func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				i.State = "terminated"
			}))
		}
		resp.Changes = append(resp.Changes, change{InstanceID: id, Current: state(i.State), Previous: state(prev)})
	}
	return resp, nil
}

func (s *Server) createTags(p url.Values) (any, *apiError) {
	ids := list(p, "ResourceId")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.instances[id]; !ok {
			return nil, &apiError{http.StatusBadRequest, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", id)}
		}
	}
	for _, id := range ids {
		for m := 1; ; m++ {
			k, ok := p["Tag."+strconv.Itoa(m)+".Key"]
			if !ok {
				break
			}
			s.instances[id].Tags[k[0]] = p.Get("Tag." + strconv.Itoa(m) + ".Value")
		}
	}
	type response struct {
		XMLName   xml.Name `xml:"CreateTagsResponse"`
		XMLNS     string   `xml:"xmlns,attr"`
		RequestID string   `xml:"requestId"`
		Return    bool     `xml:"return"`
	}
	return response{XMLNS: Namespace, RequestID: newID(""), Return: true}, nil
}

type stateXML struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

func state(name string) stateXML {
	codes := map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
	return stateXML{Code: codes[name], Name: name}
}

type tagXML struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type groupXML struct {
	ID   string `xml:"groupId"`
	Name string `xml:"groupName,omitempty"`
}

type reasonXML struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type instanceXML struct {
	InstanceID     string     `xml:"instanceId"`
	ImageID        string     `xml:"imageId"`
	State          stateXML   `xml:"instanceState"`
	PrivateDNSName string     `xml:"privateDnsName"`
	KeyName        string     `xml:"keyName,omitempty"`
	AMILaunchIndex int        `xml:"amiLaunchIndex"`
	InstanceType   string     `xml:"instanceType"`
	LaunchTime     string     `xml:"launchTime"`
	SubnetID       string     `xml:"subnetId,omitempty"`
	PrivateIP      string     `xml:"privateIpAddress,omitempty"`
	Groups         []groupXML `xml:"groupSet>item"`
	StateReason    *reasonXML `xml:"stateReason,omitempty"`
	Tags           []tagXML   `xml:"tagSet>item"`
}

func toXML(i *Instance) instanceXML {
	x := instanceXML{
		InstanceID: i.ID, ImageID: i.ImageID, State: state(i.State), KeyName: i.KeyName,
		InstanceType: i.Type, LaunchTime: i.Launched.Format("2006-01-02T15:04:05.000Z"), SubnetID: i.SubnetID,
	}
	if i.State != "terminated" {
		x.PrivateIP = i.PrivateIP
		x.PrivateDNSName = "ip-" + strings.ReplaceAll(i.PrivateIP, ".", "-") + ".ec2.internal"
	}
	for _, g := range i.SecurityGroupIDs {
		x.Groups = append(x.Groups, groupXML{ID: g})
	}
	for _, g := range i.SecurityGroups {
		x.Groups = append(x.Groups, groupXML{ID: "sg-" + g, Name: g})
	}
	if i.State == "shutting-down" || i.State == "terminated" {
		x.StateReason = &reasonXML{"Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown"}
	}
	for _, k := range slices.Sorted(maps.Keys(i.Tags)) {
		x.Tags = append(x.Tags, tagXML{k, i.Tags[k]})
	}
	return x
}

func (s *Server) reservation(root string, insts []*Instance) any {
	type response struct {
		XMLName       xml.Name
		XMLNS         string        `xml:"xmlns,attr"`
		RequestID     string        `xml:"requestId"`
		ReservationID string        `xml:"reservationId"`
		OwnerID       string        `xml:"ownerId"`
		Instances     []instanceXML `xml:"instancesSet>item"`
	}
	resp := response{XMLName: xml.Name{Local: root}, XMLNS: Namespace, RequestID: newID(""),
		ReservationID: "r-" + insts[0].ID[2:], OwnerID: "123456789012"}
	for _, i := range insts {
		resp.Instances = append(resp.Instances, toXML(i))
	}
	return resp
}
