package gofw

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/dtm-labs/client/dtmcli/dtmimp"
	"github.com/dtm-labs/client/dtmgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The business service both frameworks serve: gRPC service "busi.Bank" keeping accounts.
//
//	TransOut / TransOutRevert   {"account", "amount"} -> Empty   take money out / put it back
//	TransIn / TransInRevert     {"account", "amount"} -> Empty   put money in / take it back
//	Balances                    Empty -> Struct {account: balance}
//
// Taking out more than an account holds, or paying into the frozen account, answers Aborted:
// dtm's FAILURE, so a saga rolls back. The ledger is kept in a JSON file (the service's
// "database"), so it outlives a restart of the service process. The branches are guarded the
// way dtm's branch barrier guards them (idempotent, null compensation, no hanging action),
// with the barrier records in the same file and written together with the balances.

const (
	bankService = "busi.Bank"
	frozen      = "frozen"
)

var initialBalances = map[string]int64{"alice": 100, "bob": 0, frozen: 0}

type ledger struct {
	mu   sync.Mutex
	path string
	// Balances by account.
	Balances map[string]int64 `json:"balances"`
	// Barriers holds "gid/branch_id/op" of every branch operation done (or skipped).
	Barriers map[string]bool `json:"barriers"`
}

// openLedger reads the ledger at path, or starts one with the initial balances.
func openLedger(path string) (*ledger, error) {
	l := &ledger{path: path}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		l.Balances = map[string]int64{}
		for k, v := range initialBalances {
			l.Balances[k] = v
		}
		l.Barriers = map[string]bool{}
		return l, l.save()
	}
	if err != nil {
		return nil, err
	}
	return l, json.Unmarshal(data, l)
}

// save writes the ledger atomically: a reader (or a killed process) never sees half of it.
func (l *ledger) save() error {
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, l.path)
}

// branch runs change for the branch operation the dtm metadata of ctx names, at most once, as
// dtm's barrier does: a compensation whose action never ran records the action as done and
// does nothing (null compensation), and an action arriving after its compensation does
// nothing (hanging). A failed change leaves no record, so the ledger is as before.
func (l *ledger) branch(ctx context.Context, change func(balances map[string]int64) error) error {
	bb, err := dtmgrpc.BarrierFromGrpc(ctx)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key := func(op string) string { return fmt.Sprintf("%s/%s/%s", bb.Gid, bb.BranchID, op) }
	origin := map[string]string{dtmimp.OpCompensate: dtmimp.OpAction, dtmimp.OpCancel: dtmimp.OpTry}[bb.Op]
	originDone := origin != "" && l.Barriers[key(origin)]
	if l.Barriers[key(bb.Op)] {
		return nil // done before: a retry
	}
	l.Barriers[key(bb.Op)] = true
	if origin != "" {
		l.Barriers[key(origin)] = true
	}
	if origin != "" && !originDone {
		return l.save() // null compensation
	}
	balances := map[string]int64{}
	for k, v := range l.Balances {
		balances[k] = v
	}
	if err := change(balances); err != nil {
		delete(l.Barriers, key(bb.Op))
		return err
	}
	l.Balances = balances
	if err := l.save(); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return nil
}

func (l *ledger) balances() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int64{}
	for k, v := range l.Balances {
		out[k] = v
	}
	return out
}

type transfer struct {
	account string
	amount  int64
}

func transferOf(s *structpb.Struct) (transfer, error) {
	account := s.GetFields()["account"].GetStringValue()
	amount := int64(s.GetFields()["amount"].GetNumberValue())
	if account == "" || amount <= 0 {
		return transfer{}, status.Errorf(codes.InvalidArgument, "bad transfer %v", s.AsMap())
	}
	return transfer{account, amount}, nil
}

// transferPb is the request of the transfer methods.
func transferPb(account string, amount int64) *structpb.Struct {
	s, err := structpb.NewStruct(map[string]any{"account": account, "amount": amount})
	if err != nil {
		panic(err)
	}
	return s
}

func out(t transfer) func(map[string]int64) error {
	return func(b map[string]int64) error {
		if b[t.account] < t.amount {
			return status.Errorf(codes.Aborted, "%s holds %d, not %d", t.account, b[t.account], t.amount)
		}
		b[t.account] -= t.amount
		return nil
	}
}

func in(t transfer) func(map[string]int64) error {
	return func(b map[string]int64) error {
		if t.account == frozen {
			return status.Errorf(codes.Aborted, "account %s is frozen", t.account)
		}
		b[t.account] += t.amount
		return nil
	}
}

// registerBank adds busi.Bank, backed by l, to s (grpc-go's RegisterService, which both
// frameworks' servers offer).
func registerBank(s grpc.ServiceRegistrar, l *ledger) {
	transfers := map[string]func(transfer) func(map[string]int64) error{
		"TransOut": out, "TransOutRevert": in, "TransIn": in, "TransInRevert": out,
	}
	desc := grpc.ServiceDesc{ServiceName: bankService, HandlerType: (*any)(nil)}
	for name, change := range transfers {
		change := change
		desc.Methods = append(desc.Methods, grpc.MethodDesc{
			MethodName: name,
			Handler: unary(name, func() any { return &structpb.Struct{} }, func(ctx context.Context, req any) (any, error) {
				t, err := transferOf(req.(*structpb.Struct))
				if err == nil {
					err = l.branch(ctx, change(t))
				}
				return &emptypb.Empty{}, err
			}),
		})
	}
	desc.Methods = append(desc.Methods, grpc.MethodDesc{
		MethodName: "Balances",
		Handler: unary("Balances", func() any { return &emptypb.Empty{} }, func(context.Context, any) (any, error) {
			b := map[string]any{}
			for k, v := range l.balances() {
				b[k] = v
			}
			return structpb.NewStruct(b)
		}),
	})
	s.RegisterService(&desc, struct{}{})
}

// unary adapts handle to grpc-go's method handler, through the server's interceptors (the
// frameworks' middleware).
func unary(name string, newIn func() any, handle grpc.UnaryHandler) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := newIn()
		if err := dec(in); err != nil {
			return nil, err
		}
		if interceptor == nil {
			return handle(ctx, in)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + bankService + "/" + name}
		return interceptor(ctx, in, info, handle)
	}
}

// balancesOf asks the bank behind conn for its balances.
func balancesOf(ctx context.Context, conn grpc.ClientConnInterface) (map[string]int64, error) {
	reply := &structpb.Struct{}
	if err := conn.Invoke(ctx, "/"+bankService+"/Balances", &emptypb.Empty{}, reply); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for k, v := range reply.AsMap() {
		out[k] = int64(v.(float64))
	}
	return out, nil
}
